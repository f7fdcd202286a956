//! Pipe communication: a parent and a child process exchange messages over a duplex Pipe.

use multiproc::{Connection, Process, pipe};

/// The child: answers each greeting until the parent says goodbye.
fn child(mut conn: Connection) {
    conn.send(&"hello from the child").expect("send");
    loop {
        let msg: String = conn.recv().expect("recv");
        if msg == "goodbye" {
            conn.send(&"bye").expect("send");
            break;
        }
        conn.send(&msg.to_uppercase()).expect("send");
    }
    conn.close();
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (mut parent_conn, child_conn) = pipe(true)?;
    let mut p = Process::new(child, child_conn);
    p.start()?;

    let first: String = parent_conn.recv()?;
    println!("parent received: {first}");
    let mut replies = vec![first];
    for word in ["ping", "multiprocessing", "goodbye"] {
        parent_conn.send(word)?;
        let reply: String = parent_conn.recv()?;
        println!("parent sent {word:?}, child answered {reply:?}");
        replies.push(reply);
    }
    let code = p.join()?;

    let expected = ["hello from the child", "PING", "MULTIPROCESSING", "bye"];
    if replies != expected || code != 0 {
        eprintln!("unexpected exchange {replies:?} (child exit code {code}), expected {expected:?}");
        std::process::exit(1);
    }
    println!("exchange complete, child exit code {code}");
    Ok(())
}
