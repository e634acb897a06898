//! The writer and the reader again, over a one-way pipe: the reader stops by itself at the
//! end of the stream (Python's `EOFError`), once the writer closed its end and every end
//! the main process held is closed too.
//!
//! Python:
//! ```python
//! from multiprocessing import Process, Pipe
//! import os, time, random
//!
//! def write(conn):
//!     print('Process to write: %s' % os.getpid())
//!     for value in ['A', 'B', 'C']:
//!         print('Send %s to pipe...' % value)
//!         conn.send(value)
//!         time.sleep(random.random())
//!     conn.close()
//!
//! def read(conn):
//!     print('Process to read: %s' % os.getpid())
//!     while True:
//!         try:
//!             value = conn.recv()
//!         except EOFError:
//!             break
//!         print('Get %s from pipe.' % value)
//!
//! if __name__ == '__main__':
//!     reader_end, writer_end = Pipe(duplex=False)
//!     pw = Process(target=write, args=(writer_end,))
//!     pr = Process(target=read, args=(reader_end,))
//!     pw.start()
//!     pr.start()
//!     writer_end.close()
//!     reader_end.close()
//!     pw.join()
//!     pr.join()
//!     print('the reader saw the end of the stream')
//! ```

use std::time::Duration;

use multiproc::{Connection, Pipe, Process, RecvError};

fn write(mut conn: Connection<char>) {
    println!("Process to write: {}", std::process::id());
    for (i, value) in ['A', 'B', 'C'].into_iter().enumerate() {
        println!("Send {value} to pipe...");
        conn.send(value).unwrap();
        std::thread::sleep(Duration::from_millis(100 + (u64::from(std::process::id()) + i as u64 * 37) % 200));
    }
    conn.close();
}

fn read(conn: Connection<char>) {
    println!("Process to read: {}", std::process::id());
    loop {
        match conn.recv() {
            Ok(value) => println!("Get {value} from pipe."),
            Err(RecvError::Disconnected) => break,
            Err(e) => panic!("{e}"),
        }
    }
}

#[multiproc::main]
fn main() -> Result<(), multiproc::Error> {
    let (reader_end, writer_end) = Pipe::one_way()?;
    // The ends move into the children: the main process keeps no copy to close.
    let pw = Process::new(write, writer_end).start()?;
    let pr = Process::new(read, reader_end).start()?;
    pw.join()?;
    pr.join()?;
    println!("the reader saw the end of the stream");
    Ok(())
}
