//! Server process: a manager's server holds a dict and a list; a child process changes them
//! through proxies (sets several keys, reverses the list) and the parent prints and checks them.

use std::fmt;

use multiproc::Process;
use multiproc::manager::{DictProxy, ListProxy, Manager};
use serde::{Deserialize, Serialize};

/// A key of the dict: the article's dict mixes an int, a string and a float.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum Key {
    Int(i64),
    Str(String),
    Float(f64),
}

/// A value of the dict: a string, an int, or None.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum Val {
    Str(String),
    Int(i64),
    None,
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Key::Int(i) => write!(f, "{i}"),
            Key::Str(s) => write!(f, "'{s}'"),
            Key::Float(x) => write!(f, "{x}"),
        }
    }
}

impl fmt::Display for Val {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Val::Str(s) => write!(f, "'{s}'"),
            Val::Int(i) => write!(f, "{i}"),
            Val::None => f.write_str("None"),
        }
    }
}

/// The child: `d[1] = '1'; d['2'] = 2; d[0.25] = None; l.reverse()`.
fn f((d, l): (DictProxy<Key, Val>, ListProxy<i64>)) {
    d.set(&Key::Int(1), &Val::Str("1".into())).expect("set d[1]");
    d.set(&Key::Str("2".into()), &Val::Int(2)).expect("set d['2']");
    d.set(&Key::Float(0.25), &Val::None).expect("set d[0.25]");
    l.reverse().expect("reverse l");
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let manager = Manager::start()?;
    let d: DictProxy<Key, Val> = manager.dict()?;
    let l: ListProxy<i64> = manager.list_from(0..10)?;

    let mut p = Process::new(f, (d.clone(), l.clone()));
    p.start()?;
    let code = p.join()?;

    let items = d.items()?;
    let list = l.copy()?;
    let shown: Vec<String> = items.iter().map(|(k, v)| format!("{k}: {v}")).collect();
    println!("{{{}}}", shown.join(", "));
    println!("{list:?}");

    let expected_items = vec![
        (Key::Int(1), Val::Str("1".into())),
        (Key::Str("2".into()), Val::Int(2)),
        (Key::Float(0.25), Val::None),
    ];
    let expected_list: Vec<i64> = (0..10).rev().collect();
    if code != 0 || items != expected_items || list != expected_list {
        eprintln!("unexpected result (child exit code {code}): {items:?} {list:?}");
        std::process::exit(1);
    }
    let server = manager.server_pid();
    manager.shutdown()?;
    println!("the child changed both objects in the server process {server}; the server has stopped");
    Ok(())
}
