//! Ten children started in a loop, all joined, then the parent says all mail was sent.
//!
//! Python:
//! ```python
//! def send_mail(i):
//!     time.sleep(random.random())
//!     print(f'mail {i} sent by {os.getpid()}')
//!
//! if __name__ == '__main__':
//!     processes = [Process(target=send_mail, args=(i,)) for i in range(10)]
//!     for p in processes:
//!         p.start()
//!     for p in processes:
//!         p.join()
//!     print('all mail sent')
//! ```

use std::time::Duration;

use multiproc::Process;

fn send_mail(i: u32) {
    // A pseudo-random pause per child, so that they finish out of order.
    let pause = (u64::from(i) * 7919 + u64::from(std::process::id())) % 300;
    std::thread::sleep(Duration::from_millis(pause));
    println!("mail {i} sent by {}", std::process::id());
}

#[multiproc::main]
fn main() -> Result<(), multiproc::Error> {
    let mut processes = Vec::new();
    for i in 0..10 {
        processes.push(Process::new(send_mail, i).start()?);
    }
    for p in processes {
        p.join()?;
    }
    println!("all mail sent");
    Ok(())
}
