//! Tests for the container proxies (dict, list, Namespace, Value, Array): every method, the
//! remote errors they raise, and copying values out, with servers started by `Spawn` and
//! `ForkServer`.

mod common;

use std::collections::{BTreeMap, HashMap};

use common::*;
use multiproc_manager::{ErrorKind, Manager};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Point {
    x: i64,
    label: String,
}

fn point(x: i64) -> Point {
    Point { x, label: format!("p{x}") }
}

fn exercise_dict(manager: &Manager) {
    let d = manager.dict::<String, Point>().expect("dict");
    assert!(d.is_empty().unwrap());
    d.set("a", &point(1)).unwrap();
    d.set("b", &point(2)).unwrap();
    assert_eq!(d.insert("c", &point(3)).unwrap(), None);
    assert_eq!(d.insert("a", &point(10)).unwrap(), Some(point(1)));
    assert_eq!(d.get("a").unwrap(), Some(point(10)));
    assert_eq!(d.get("zz").unwrap(), None);
    assert_eq!(d.get_item("b").unwrap(), point(2));
    let err = d.get_item("zz").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::MissingKey, "{err}");
    assert!(d.contains_key("c").unwrap());
    assert!(!d.contains_key("zz").unwrap());
    assert_eq!(d.len().unwrap(), 3);
    // Insertion order, as Python's dict; replacing a value keeps its place.
    assert_eq!(d.keys().unwrap(), ["a", "b", "c"]);
    assert_eq!(d.values().unwrap(), [point(10), point(2), point(3)]);
    assert_eq!(d.remove("b").unwrap(), point(2));
    assert_eq!(d.remove("b").unwrap_err().kind(), ErrorKind::MissingKey);
    assert_eq!(d.pop("b").unwrap(), None);
    assert_eq!(d.pop("c").unwrap(), Some(point(3)));
    d.update([("x".to_string(), point(7)), ("y".to_string(), point(8))]).unwrap();
    assert_eq!(d.setdefault("x", &point(0)).unwrap(), point(7));
    assert_eq!(d.setdefault("z", &point(9)).unwrap(), point(9));
    assert_eq!(d.popitem().unwrap(), ("z".to_string(), point(9)));
    let items = d.items().unwrap();
    assert_eq!(items, [("a".into(), point(10)), ("x".into(), point(7)), ("y".into(), point(8))]);
    let copy: HashMap<String, Point> = d.copy().unwrap();
    assert_eq!(copy.len(), 3);
    assert_eq!(copy["x"], point(7));
    d.clear().unwrap();
    assert_eq!(d.len().unwrap(), 0);
    let err = d.popitem().unwrap_err();
    assert_eq!(
        (err.kind(), err.to_string().as_str()),
        (ErrorKind::MissingKey, "popitem(): dictionary is empty")
    );

    let numbers = manager.dict_from((0..100u32).map(|i| (i, i * i))).expect("dict_from");
    assert_eq!(numbers.len().unwrap(), 100);
    assert_eq!(numbers.get(&9).unwrap(), Some(81));
    let sorted: BTreeMap<u32, u32> = numbers.copy().unwrap();
    assert_eq!(sorted.values().sum::<u32>(), (0..100).map(|i| i * i).sum());
}

fn exercise_list(manager: &Manager) {
    let l = manager.list_from([3i64, 1, 2]).expect("list");
    assert_eq!(l.len().unwrap(), 3);
    l.push(&5).unwrap();
    l.extend([4, 0]).unwrap();
    assert_eq!(l.copy().unwrap(), [3, 1, 2, 5, 4, 0]);
    assert_eq!(l.get(3).unwrap(), 5);
    let err = l.get(6).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::IndexOutOfRange, "{err}");
    assert_eq!(err.to_string(), "list index 6 out of range for length 6");
    l.set(0, &30).unwrap();
    assert_eq!(l.set(6, &0).unwrap_err().kind(), ErrorKind::IndexOutOfRange);
    l.insert(1, &10).unwrap();
    l.insert(7, &70).unwrap();
    assert_eq!(l.insert(9, &0).unwrap_err().kind(), ErrorKind::IndexOutOfRange);
    assert_eq!(l.copy().unwrap(), [30, 10, 1, 2, 5, 4, 0, 70]);
    assert_eq!(l.slice(1..3).unwrap(), [10, 1]);
    assert_eq!(l.slice(2..9).unwrap_err().kind(), ErrorKind::IndexOutOfRange);
    assert_eq!(l.pop().unwrap(), 70);
    assert_eq!(l.remove_at(0).unwrap(), 30);
    assert_eq!(l.remove_at(10).unwrap_err().kind(), ErrorKind::IndexOutOfRange);
    assert_eq!(l.index(&5).unwrap(), 3);
    assert_eq!(l.index(&99).unwrap_err().kind(), ErrorKind::InvalidValue);
    l.push(&1).unwrap();
    assert_eq!(l.count(&1).unwrap(), 2);
    assert!(l.contains(&4).unwrap());
    l.remove(&1).unwrap();
    assert_eq!(l.remove(&99).unwrap_err().kind(), ErrorKind::InvalidValue);
    assert_eq!(l.copy().unwrap(), [10, 2, 5, 4, 0, 1]);
    l.sort().unwrap();
    assert_eq!(l.copy().unwrap(), [0, 1, 2, 4, 5, 10]);
    l.sort_by(|a, b| b.cmp(a)).unwrap();
    assert_eq!(l.copy().unwrap(), [10, 5, 4, 2, 1, 0]);
    l.sort_by_key(|x| (x % 2, *x)).unwrap();
    assert_eq!(l.copy().unwrap(), [0, 2, 4, 10, 1, 5]);
    l.reverse().unwrap();
    assert_eq!(l.copy().unwrap(), [5, 1, 10, 4, 2, 0]);
    l.assign(&[7, 8]).unwrap();
    assert_eq!(l.copy().unwrap(), [7, 8]);
    l.clear().unwrap();
    assert!(l.is_empty().unwrap());
    let err = l.pop().unwrap_err();
    assert_eq!((err.kind(), err.to_string().as_str()), (ErrorKind::IndexOutOfRange, "pop from empty list"));

    let words = manager.list::<String>().expect("list");
    words.push("pear").unwrap();
    words.push("apple").unwrap();
    words.sort().unwrap();
    assert_eq!(words.copy().unwrap(), ["apple", "pear"]);
    assert!(words.contains("pear").unwrap());
}

fn exercise_namespace_value_array(manager: &Manager) {
    let ns = manager.namespace().expect("namespace");
    ns.set("x", &10i32).unwrap();
    ns.set("name", "fred").unwrap();
    ns.set("point", &point(4)).unwrap();
    assert_eq!(ns.get::<i32>("x").unwrap(), 10);
    assert_eq!(ns.get::<String>("name").unwrap(), "fred");
    assert_eq!(ns.get::<Point>("point").unwrap(), point(4));
    let err = ns.get::<i32>("y").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::MissingAttribute);
    assert_eq!(err.to_string(), "'Namespace' object has no attribute 'y'");
    assert_eq!(ns.get::<u64>("name").unwrap_err().kind(), ErrorKind::Codec, "a value of another type");
    assert_eq!(ns.names().unwrap(), ["name", "point", "x"]);
    assert!(ns.contains("x").unwrap());
    ns.remove("x").unwrap();
    assert!(!ns.contains("x").unwrap());
    assert_eq!(ns.remove("x").unwrap_err().kind(), ErrorKind::MissingAttribute);

    let v = manager.value(&1.5f64).expect("value");
    assert_eq!(v.get().unwrap(), 1.5);
    v.set(&2.5).unwrap();
    assert_eq!(v.swap(&3.0).unwrap(), 2.5);
    assert!(!v.compare_and_set(&1.0, &9.0).unwrap());
    assert!(v.compare_and_set(&3.0, &4.0).unwrap());
    assert_eq!(v.update(|x| x * 2.0).unwrap(), 8.0);
    assert_eq!(v.get().unwrap(), 8.0);

    let a = manager.array(&[0u32; 4]).expect("array");
    assert_eq!(a.len().unwrap(), 4);
    a.set(2, &7).unwrap();
    assert_eq!(a.get(2).unwrap(), 7);
    assert_eq!(a.get(4).unwrap_err().kind(), ErrorKind::IndexOutOfRange);
    assert_eq!(a.set(4, &1).unwrap_err().kind(), ErrorKind::IndexOutOfRange);
    assert_eq!(a.copy().unwrap(), [0, 0, 7, 0]);
    a.assign(&[1, 2, 3, 4]).unwrap();
    assert_eq!(a.copy().unwrap(), [1, 2, 3, 4]);
    assert_eq!(a.assign(&[1]).unwrap_err().kind(), ErrorKind::InvalidValue, "an array keeps its length");
}

#[test]
fn serves_containers() {
    scenario(|| {
        for method in METHODS {
            let manager = start(method);
            exercise_dict(&manager);
            exercise_list(&manager);
            exercise_namespace_value_array(&manager);
            // Errors raised by objects never ended the connection.
            assert_eq!(manager.dict::<u8, u8>().unwrap().len().unwrap(), 0);
        }
    });
}

#[test]
fn updates_values_atomically_from_threads() {
    scenario(|| {
        let manager = start(METHODS[1]);
        let counter = manager.value(&0u64).expect("value");
        let list = manager.list::<u64>().expect("list");
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let (counter, list) = (counter.clone(), list.clone());
                std::thread::spawn(move || {
                    for i in 0..50 {
                        counter.update(|n| n + 1).expect("update");
                        list.push(&(t * 100 + i)).expect("push");
                        if i % 10 == 0 {
                            list.sort().expect("sort");
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().expect("thread");
        }
        assert_eq!(counter.get().unwrap(), 200, "no update was lost");
        let mut items = list.copy().unwrap();
        assert_eq!(items.len(), 200, "no push was lost to a sort's write-back");
        items.sort();
        items.dedup();
        assert_eq!(items.len(), 200);
    });
}

#[test]
fn compares_keys_by_encoding() {
    scenario(|| {
        let manager = start(METHODS[1]);
        let d = manager.dict::<(i32, String), Vec<u8>>().expect("dict");
        d.set(&(1, "one".to_string()), &vec![1]).unwrap();
        assert_eq!(d.get(&(1, "one".to_string())).unwrap(), Some(vec![1]));
        assert_eq!(d.get(&(1, "uno".to_string())).unwrap(), None);
        let big = vec![7u8; 1 << 20];
        d.set(&(2, "big".to_string()), &big).unwrap();
        assert_eq!(d.get(&(2, "big".to_string())).unwrap().map(|v| v.len()), Some(1 << 20));
    });
}
