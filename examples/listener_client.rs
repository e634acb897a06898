//! Python's "Listeners and Clients" example: a listener sends a value and raw bytes to a
//! client that knows the key. The client here is a child process given the address; any
//! program that links multiproc could be it, with no family relation.
//!
//! Python:
//! ```python
//! from multiprocessing.connection import Listener, Client
//! from multiprocessing import Process
//! from array import array
//!
//! def client(address):
//!     with Client(address, authkey=b'secret password') as conn:
//!         print(conn.recv())                  # => [2.25, None, 'junk', float]
//!         print(conn.recv_bytes())            # => 'hello'
//!         print(array('i', conn.recv_bytes())) # => array('i', [42, 1729])
//!
//! if __name__ == '__main__':
//!     with Listener(('localhost', 0), authkey=b'secret password') as listener:
//!         p = Process(target=client, args=(listener.address,))
//!         p.start()
//!         with listener.accept() as conn:
//!             print('connection accepted from', listener.last_accepted)
//!             conn.send([2.25, None, 'junk', float])
//!             conn.send_bytes(b'hello')
//!             conn.send_bytes(array('i', [42, 1729]))
//!         p.join()
//! ```

use std::net::SocketAddr;

use multiproc::{Client, Listener, Process};

type Message = (f64, Option<u32>, String);

fn client(address: SocketAddr) {
    let conn = Client::connect::<Message>(address, b"secret password").unwrap();
    println!("{:?}", conn.recv().unwrap());
    println!("{:?}", String::from_utf8_lossy(&conn.recv_bytes().unwrap()));
    let ints: Vec<i32> =
        conn.recv_bytes().unwrap().chunks_exact(4).map(|c| i32::from_ne_bytes(c.try_into().unwrap())).collect();
    println!("{ints:?}");
}

#[multiproc::main]
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let listener = Listener::bind(SocketAddr::from(([127, 0, 0, 1], 0)), b"secret password")?;
    let multiproc::Address::Tcp(address) = listener.address().clone() else { unreachable!("a TCP listener") };
    let p = Process::new(client, address).start()?;
    let conn = listener.accept::<Message>()?;
    println!("connection accepted from {:?}", conn.peer_address());
    conn.send((2.25, None, "junk".to_string()))?;
    conn.send_bytes(b"hello")?;
    conn.send_bytes(&[42i32, 1729].iter().flat_map(|i| i.to_ne_bytes()).collect::<Vec<u8>>())?;
    p.join()?;
    Ok(())
}
