//! The ten mail senders again, in the object style: a struct with its arguments and `run`.
//!
//! Python:
//! ```python
//! class MailSender(Process):
//!     def __init__(self, i):
//!         super().__init__()
//!         self.i = i
//!
//!     def run(self):
//!         time.sleep(random.random())
//!         print(f'mail {self.i} sent by {os.getpid()}')
//!
//! if __name__ == '__main__':
//!     senders = [MailSender(i) for i in range(10)]
//!     for s in senders:
//!         s.start()
//!     for s in senders:
//!         s.join()
//!     print('all mail sent')
//! ```

use std::time::Duration;

use multiproc::{Process, Run};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
struct MailSender {
    i: u32,
}

impl Run for MailSender {
    type Output = ();

    fn run(self) {
        let pause = (u64::from(self.i) * 7919 + u64::from(std::process::id())) % 300;
        std::thread::sleep(Duration::from_millis(pause));
        println!("mail {} sent by {}", self.i, std::process::id());
    }
}

#[multiproc::main]
fn main() -> Result<(), multiproc::Error> {
    let senders: Vec<_> = (0..10).map(|i| Process::from_run(MailSender { i })).collect();
    let mut running = Vec::new();
    for s in senders {
        running.push(s.start()?);
    }
    for r in running {
        r.join()?;
    }
    println!("all mail sent");
    Ok(())
}
