//! Registered types (`managed!`) on a family manager: two types known by one name.

mod common;

use std::time::Duration;

use multiproc::{Manager, ManagerError};

multiproc::test_support!();

const LIMIT: Duration = Duration::from_secs(60);

/// Two types of one shape, both named `Stats` as written (`managed!`'s default name), in
/// two modules (or two crates).
mod first {
    use serde::{Deserialize, Serialize};

    #[derive(Serialize, Deserialize)]
    pub struct Stats {
        pub count: u64,
    }

    impl Stats {
        pub fn bump(&mut self) -> u64 {
            self.count += 1;
            self.count
        }
    }

    multiproc::managed! {
        /// `first::Stats` on the server.
        pub proxy StatsProxy for Stats {
            fn bump(&mut self) -> u64;
        }
    }
}

mod second {
    use serde::{Deserialize, Serialize};

    #[derive(Serialize, Deserialize)]
    pub struct Stats {
        pub count: u64,
    }

    impl Stats {
        pub fn bump(&mut self) -> u64 {
            self.count += 1000;
            self.count
        }
    }

    multiproc::managed! {
        /// `second::Stats` on the server.
        pub proxy StatsProxy for Stats {
            fn bump(&mut self) -> u64;
        }
    }
}

/// A second type created under a name another type took on that manager is refused with a
/// typed error. Before (aud82), the server made the first type's value of it, and its
/// proxy ran the first type's methods: `bump` answered 1 where `second::Stats` says 1000.
#[test]
fn a_type_created_under_another_types_name_is_refused_not_run_as_that_type() {
    let _w = common::watchdog(LIMIT);
    let manager = Manager::start().unwrap();
    let a: first::StatsProxy = manager.create(first::Stats { count: 0 }).unwrap();
    match manager.create(second::Stats { count: 0 }) {
        Err(ManagerError::InvalidArgument(why)) => assert!(why.contains("name"), "{why}"),
        Err(other) => panic!("another error: {other}"),
        Ok(b) => panic!("made, and its bump ran as {:?}", b.bump()),
    }
    assert_eq!(a.bump().unwrap(), 1, "the first type is served as before");
    // Another manager knows nothing of the first: the second type is its own there.
    let other = Manager::start().unwrap();
    let b: second::StatsProxy = other.create(second::Stats { count: 0 }).unwrap();
    assert_eq!(b.bump().unwrap(), 1000);
}

/// Two types of one name registered with the builder: the server keeps the last, and a
/// `create` of the first is refused (not made as the last one).
#[test]
fn of_two_types_of_one_name_registered_the_last_is_served_and_the_first_refused() {
    let _w = common::watchdog(LIMIT);
    let manager = Manager::builder().register::<first::Stats>().register::<second::Stats>().start().unwrap();
    assert!(matches!(manager.create(first::Stats { count: 0 }), Err(ManagerError::InvalidArgument(_))));
    let b: second::StatsProxy = manager.create(second::Stats { count: 0 }).unwrap();
    assert_eq!(b.bump().unwrap(), 1000);
}
