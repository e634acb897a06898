//! A queue served over TCP on 127.0.0.1 with an authkey, and two other programs that
//! connect to it: one puts `'hello'`, the other gets it. Here the server starts the two
//! client programs itself (this same binary, with `--put` or `--get ADDRESS`), so that
//! the example runs alone; across machines, run them by hand.
//!
//! Python (three programs):
//! ```python
//! # server
//! from multiprocessing.managers import BaseManager
//! from queue import Queue
//! queue = Queue()
//! class QueueManager(BaseManager): pass
//! QueueManager.register('get_queue', callable=lambda: queue)
//! m = QueueManager(address=('', 50000), authkey=b'abracadabra')
//! s = m.get_server()
//! s.serve_forever()
//!
//! # client 1
//! from multiprocessing.managers import BaseManager
//! class QueueManager(BaseManager): pass
//! QueueManager.register('get_queue')
//! m = QueueManager(address=('foo.bar.org', 50000), authkey=b'abracadabra')
//! m.connect()
//! queue = m.get_queue()
//! queue.put('hello')
//!
//! # client 2
//! ...
//! queue = m.get_queue()
//! queue.get()        # 'hello'
//! ```

use std::process::Command;

use multiproc::{Manager, QueueProxy};

const AUTHKEY: &[u8] = b"abracadabra";

/// A client program: connects, finds the published queue, puts or gets.
fn client(mode: &str, address: &str) -> Result<(), multiproc::ManagerError> {
    let m = Manager::connect(address, AUTHKEY)?;
    let queue: QueueProxy<String> = m.lookup("get_queue")?;
    match mode {
        "--put" => {
            queue.put("hello".into())?;
            println!("client 1 put 'hello'");
        }
        _ => println!("client 2 got '{}'", queue.get()?),
    }
    Ok(())
}

fn run_client(mode: &str, address: &str) -> Result<(), Box<dyn std::error::Error>> {
    let status = Command::new(std::env::current_exe()?).args([mode, address]).status()?;
    if !status.success() {
        return Err(format!("client {mode} failed: {status}").into());
    }
    Ok(())
}

#[multiproc::main]
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let [mode, address] = args.as_slice() {
        return Ok(client(mode, address)?);
    }
    // The server: port 0 takes a free port (Python's example uses 50000).
    let m = Manager::builder().address("127.0.0.1:0").authkey(AUTHKEY).start()?;
    let address = m.address().expect("listening").to_string();
    m.publish("get_queue", &m.queue::<String>()?)?;
    println!("serving on {address}");
    run_client("--put", &address)?;
    run_client("--get", &address)?;
    // A client with a wrong key is refused, and the server goes on.
    match Manager::connect(address.as_str(), b"wrong key") {
        Err(e) => println!("a wrong key: {e}"),
        Ok(_) => return Err("a wrong key was accepted".into()),
    }
    m.shutdown()?;
    Ok(())
}
