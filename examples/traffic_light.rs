//! The traffic light: a light process turns an `Event` green (set) for a while and red
//! (clear) for a while, over and over; a car process lets twenty cars pass, each waiting
//! for green.
//!
//! Python:
//! ```python
//! import time
//! from multiprocessing import Process, Event
//!
//! def light(e):
//!     while True:
//!         print('the light is green')
//!         e.set()
//!         time.sleep(5)
//!         print('the light is red')
//!         e.clear()
//!         time.sleep(5)
//!
//! def cars(e):
//!     for i in range(20):
//!         if not e.is_set():
//!             print(f'car {i} waits at the red light')
//!         e.wait()
//!         print(f'car {i} passes')
//!         time.sleep(1)
//!
//! if __name__ == '__main__':
//!     e = Event()
//!     Process(target=light, args=(e,), daemon=True).start()
//!     c = Process(target=cars, args=(e,))
//!     c.start()
//!     c.join()
//! ```
//!
//! The times are shorter here (green 1 s, red 0.6 s, a car every 0.2 s), so that the
//! example ends in a few seconds.

use std::time::Duration;

use multiproc::{Event, Process};

fn light(green: Event) {
    loop {
        println!("the light is green");
        green.set();
        std::thread::sleep(Duration::from_millis(1000));
        println!("the light is red");
        green.clear();
        std::thread::sleep(Duration::from_millis(600));
    }
}

fn cars(green: Event) -> u32 {
    let mut waited = 0;
    for i in 0..20 {
        if !green.is_set() {
            println!("car {i} waits at the red light");
            waited += 1;
        }
        green.wait().expect("the light process holds the event");
        println!("car {i} passes");
        std::thread::sleep(Duration::from_millis(200));
    }
    waited
}

#[multiproc::main]
fn main() -> Result<(), multiproc::Error> {
    let green = Event::new()?;
    // Daemonic: terminated when main ends, as in Python.
    let _light = Process::new(light, green.clone()).daemon(true).start()?;
    let waited = Process::new(cars, green.clone()).start()?.join()?;
    println!("twenty cars passed; {waited} of them waited for green");
    Ok(())
}
