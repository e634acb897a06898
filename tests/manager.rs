//! `Manager`: a server process keeping shared objects, used through proxies.

mod common;

use std::time::Duration;

use common::watchdog;
use multiproc::{DictProxy, ListProxy, Manager, ManagerError, Process};

multiproc::test_support!();

const LIMIT: Duration = Duration::from_secs(120);

fn child_fills((d, l): (DictProxy<String, i32>, ListProxy<i32>)) {
    d.insert("1".into(), 1).unwrap();
    d.insert("two".into(), 2).unwrap();
    l.reverse().unwrap();
}

#[test]
fn a_child_changes_a_dict_and_a_list_the_parent_sees() {
    let _w = watchdog(LIMIT);
    let manager = Manager::start().unwrap();
    let d = manager.dict::<String, i32>().unwrap();
    let l = manager.list_from(0..10).unwrap();
    Process::new(child_fills, (d.clone(), l.clone())).start().unwrap().join().unwrap();
    assert_eq!(d.items().unwrap(), vec![("1".to_string(), 1), ("two".to_string(), 2)]);
    assert_eq!(l.to_vec().unwrap(), (0..10).rev().collect::<Vec<_>>());
    manager.shutdown().unwrap();
    assert!(matches!(d.len(), Err(ManagerError::ServerGone { .. })));
}
