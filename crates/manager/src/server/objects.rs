//! The objects a server holds, and their methods by name.
//!
//! Containers keep encoded bytes: the server never decodes a user's value. Methods that can
//! wait (queues, locks, conditions, events, barriers) answer at once when they can, and
//! otherwise hand back a job that the session runs on a thread of its own.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use multiproc_wire::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::peer::Peer;
use super::sync::{Barrier, Condition, Event, Lock, Owner, Queue, Semaphore};
use crate::client::lock;
use crate::error::{Error, ErrorKind, Result};
use crate::managed::DynManaged;
use crate::protocol::{Spec, Wait};
use crate::proxy::type_ids;

/// Borrowed bytes that serialize as one block, as [`Bytes`] does.
pub(crate) struct Raw<'a>(pub(crate) &'a [u8]);

impl Serialize for Raw<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        serializer.serialize_bytes(self.0)
    }
}

/// Decodes a method's arguments.
pub(crate) fn args<T: DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    multiproc_wire::decode(bytes, Vec::new())
        .map_err(|e| Error::bad_request("cannot decode the arguments", e))
}

/// Encodes a method's result.
pub(crate) fn ok<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>> {
    multiproc_wire::encode(value).map(|e| e.bytes).map_err(|e| Error::codec("cannot encode the result", e))
}

/// The result of a method that returns nothing.
pub(crate) fn unit() -> Result<Vec<u8>> {
    Ok(Vec::new())
}

fn unknown(type_id: &str, method: &str) -> Error {
    Error::unknown_method(type_id, method)
}

fn index_error(what: &str, index: u64, len: usize) -> Error {
    Error::new(ErrorKind::IndexOutOfRange, format!("{what} index {index} out of range for length {len}"))
}

/// What a method call gives the session: a result now, or a job that waits.
pub(crate) enum Outcome {
    Done(Result<Vec<u8>>),
    /// A result that took something for the caller: see [`Reply`].
    Took(Reply),
    Block(Box<dyn FnOnce() -> Reply + Send>),
}

impl From<Result<Vec<u8>>> for Outcome {
    fn from(result: Result<Vec<u8>>) -> Outcome {
        Outcome::Done(result)
    }
}

/// Gives back what a call took (an item to the front of its queue, a unit to its semaphore, a
/// lock, a notification) when the reply cannot be delivered.
pub(crate) type Undo = Box<dyn FnOnce() + Send>;

/// A call's result, and how to undo it if the caller never gets it: the call is committed only
/// once the reply is written.
pub(crate) struct Reply {
    pub(crate) result: Result<Vec<u8>>,
    pub(crate) undo: Option<Undo>,
}

impl Reply {
    /// A result that is committed whatever becomes of its reply.
    pub(crate) fn done(result: Result<Vec<u8>>) -> Reply {
        Reply { result, undo: None }
    }

    /// A result to be undone by `undo` when its reply cannot be delivered.
    pub(crate) fn took(result: Result<Vec<u8>>, undo: impl FnOnce() + Send + 'static) -> Reply {
        Reply { result, undo: Some(Box::new(undo)) }
    }
}

impl From<Result<Vec<u8>>> for Reply {
    fn from(result: Result<Vec<u8>>) -> Reply {
        Reply::done(result)
    }
}

/// Who calls, and their connection.
pub(crate) struct Caller<'a> {
    pub(crate) owner: Owner,
    pub(crate) peer: &'a Arc<Peer>,
}

/// An object in the server.
pub(crate) enum Object {
    Dict(Mutex<Dict>),
    List(Mutex<List>),
    Namespace(Mutex<BTreeMap<String, Vec<u8>>>),
    Value(Mutex<Vec<u8>>),
    Array(Mutex<Vec<Vec<u8>>>),
    Queue(Arc<Queue>),
    Lock(Arc<Lock>),
    Semaphore(Arc<Semaphore>),
    Condition(Arc<Condition>),
    Event(Arc<Event>),
    Barrier(Arc<Barrier>),
    User(Mutex<Box<dyn DynManaged>>, String),
}

impl Object {
    /// Makes a built-in object (not a registered type, nor a condition over a given lock).
    pub(crate) fn from_spec(spec: Spec) -> Result<Object> {
        let bytes = |items: Vec<Bytes>| items.into_iter().map(Bytes::into_vec).collect();
        Ok(match spec {
            Spec::Dict(items) => {
                let mut dict = Dict::default();
                for (k, v) in items {
                    dict.insert(k.0, v.0);
                }
                Object::Dict(Mutex::new(dict))
            }
            Spec::List(items) => Object::List(Mutex::new(List { items: bytes(items), version: 0 })),
            Spec::Namespace => Object::Namespace(Mutex::new(BTreeMap::new())),
            Spec::Value(value) => Object::Value(Mutex::new(value.0)),
            Spec::Array(items) => Object::Array(Mutex::new(bytes(items))),
            Spec::Queue { maxsize, joinable } => Object::Queue(Arc::new(Queue::new(maxsize, joinable))),
            Spec::Lock { reentrant } => Object::Lock(Arc::new(Lock::new(reentrant))),
            Spec::Semaphore { value, bounded } => Object::Semaphore(Arc::new(Semaphore::new(value, bounded))),
            Spec::Condition(None) => Object::Condition(Arc::new(Condition::new(Arc::new(Lock::new(true))))),
            Spec::Event => Object::Event(Arc::new(Event::new())),
            Spec::Barrier(parties) => {
                if parties == 0 {
                    return Err(Error::new(ErrorKind::InvalidValue, "a barrier needs at least one party"));
                }
                Object::Barrier(Arc::new(Barrier::new(parties)))
            }
            Spec::Condition(Some(_)) | Spec::User { .. } => {
                return Err(Error::new(ErrorKind::BadRequest, "this object is made elsewhere"));
            }
        })
    }

    /// The type id proxies know the object by.
    pub(crate) fn type_id(&self) -> &str {
        match self {
            Object::Dict(_) => type_ids::DICT,
            Object::List(_) => type_ids::LIST,
            Object::Namespace(_) => type_ids::NAMESPACE,
            Object::Value(_) => type_ids::VALUE,
            Object::Array(_) => type_ids::ARRAY,
            Object::Queue(q) if q.joinable() => type_ids::JOINABLE_QUEUE,
            Object::Queue(_) => type_ids::QUEUE,
            Object::Lock(l) if l.reentrant() => type_ids::RLOCK,
            Object::Lock(_) => type_ids::LOCK,
            Object::Semaphore(s) if s.bounded() => type_ids::BOUNDED_SEMAPHORE,
            Object::Semaphore(_) => type_ids::SEMAPHORE,
            Object::Condition(_) => type_ids::CONDITION,
            Object::Event(_) => type_ids::EVENT,
            Object::Barrier(_) => type_ids::BARRIER,
            Object::User(_, type_id) => type_id,
        }
    }

    /// Whether a call of `method` may leave an owned lock (an `RLock`'s, a condition's over
    /// one) held by the caller. A plain `Lock` has no owner: any process may release it.
    pub(crate) fn may_own_lock(&self, method: &str) -> bool {
        let owned = match self {
            Object::Lock(l) => l.reentrant(),
            Object::Condition(c) => c.lock().reentrant(),
            _ => false,
        };
        owned && matches!(method, "acquire" | "wait")
    }

    /// Calls `method` with encoded `args`.
    pub(crate) fn call(&self, method: &str, bytes: &[u8], caller: &Caller<'_>) -> Outcome {
        let type_id = self.type_id();
        match self {
            Object::Dict(dict) => dict_call(&mut lock(dict), type_id, method, bytes).into(),
            Object::List(list) => list_call(&mut lock(list), type_id, method, bytes).into(),
            Object::Namespace(ns) => namespace_call(&mut lock(ns), type_id, method, bytes).into(),
            Object::Value(value) => value_call(&mut lock(value), type_id, method, bytes).into(),
            Object::Array(array) => array_call(&mut lock(array), type_id, method, bytes).into(),
            Object::Queue(queue) => queue.call(type_id, method, bytes, caller),
            Object::Lock(lock) => lock.call(type_id, method, bytes, caller),
            Object::Semaphore(sem) => sem.call(type_id, method, bytes, caller),
            Object::Condition(cond) => cond.call(type_id, method, bytes, caller),
            Object::Event(event) => event.call(type_id, method, bytes, caller),
            Object::Barrier(barrier) => barrier.call(type_id, method, bytes, caller),
            Object::User(object, _) => lock(object).call(method, bytes).into(),
        }
    }

    /// Wakes every call waiting on the object, so that those of a connection that has gone
    /// notice it.
    pub(crate) fn wake_all(&self) {
        match self {
            Object::Queue(q) => q.wake_all(),
            Object::Lock(l) => l.wake_all(),
            Object::Semaphore(s) => s.wake_all(),
            Object::Condition(c) => c.wake_all(),
            Object::Event(e) => e.wake_all(),
            Object::Barrier(b) => b.wake_all(),
            _ => {}
        }
    }

    /// Releases an owned lock that connection `conn` holds, for the next owner to learn that
    /// its owner died.
    pub(crate) fn release_owned_by(&self, conn: u64) {
        match self {
            Object::Lock(l) => l.release_owned_by(conn),
            Object::Condition(c) => c.lock().release_owned_by(conn),
            _ => {}
        }
    }

    /// The lock of a `Lock` or `RLock` object, for a condition over it.
    pub(crate) fn as_lock(&self) -> Option<&Arc<Lock>> {
        match self {
            Object::Lock(l) => Some(l),
            _ => None,
        }
    }
}

/// The wait a blocking method was given.
pub(crate) fn wait_arg(bytes: &[u8]) -> Result<Wait> {
    args(bytes)
}

// ---------------------------------------------------------------------------------- dict

/// A map from encoded keys to encoded values that remembers insertion order (as Python's
/// dict): a hash index into a vector of entries, holes left by removals compacted when they
/// outnumber the entries.
#[derive(Default)]
pub(crate) struct Dict {
    index: HashMap<Vec<u8>, usize>,
    entries: Vec<Option<(Vec<u8>, Vec<u8>)>>,
}

impl Dict {
    fn get(&self, key: &[u8]) -> Option<&[u8]> {
        let &i = self.index.get(key)?;
        self.entries[i].as_ref().map(|(_, v)| v.as_slice())
    }

    fn insert(&mut self, key: Vec<u8>, value: Vec<u8>) -> Option<Vec<u8>> {
        if let Some(&i) = self.index.get(&key) {
            let entry = self.entries[i].as_mut().expect("an indexed entry");
            return Some(std::mem::replace(&mut entry.1, value));
        }
        self.index.insert(key.clone(), self.entries.len());
        self.entries.push(Some((key, value)));
        None
    }

    fn remove(&mut self, key: &[u8]) -> Option<Vec<u8>> {
        let i = self.index.remove(key)?;
        let (_, value) = self.entries[i].take().expect("an indexed entry");
        self.compact();
        Some(value)
    }

    fn pop_last(&mut self) -> Option<(Vec<u8>, Vec<u8>)> {
        while let Some(last) = self.entries.pop() {
            if let Some((key, value)) = last {
                self.index.remove(&key);
                return Some((key, value));
            }
        }
        None
    }

    fn len(&self) -> usize {
        self.index.len()
    }

    fn iter(&self) -> impl Iterator<Item = &(Vec<u8>, Vec<u8>)> {
        self.entries.iter().flatten()
    }

    fn clear(&mut self) {
        self.index.clear();
        self.entries.clear();
    }

    fn compact(&mut self) {
        if self.entries.len() < 32 || self.index.len() * 2 > self.entries.len() {
            return;
        }
        self.entries.retain(Option::is_some);
        for (i, entry) in self.entries.iter().enumerate() {
            let (key, _) = entry.as_ref().expect("holes were removed");
            *self.index.get_mut(key).expect("an indexed key") = i;
        }
    }
}

fn missing_key() -> Error {
    Error::new(ErrorKind::MissingKey, "key not found in the dict")
}

fn dict_call(dict: &mut Dict, type_id: &str, method: &str, bytes: &[u8]) -> Result<Vec<u8>> {
    match method {
        "get" => {
            let key: Bytes = args(bytes)?;
            ok(&dict.get(&key.0).map(Raw))
        }
        "get_item" => {
            let key: Bytes = args(bytes)?;
            ok(&Raw(dict.get(&key.0).ok_or_else(missing_key)?))
        }
        "set" => {
            let (key, value): (Bytes, Bytes) = args(bytes)?;
            dict.insert(key.0, value.0);
            unit()
        }
        "insert" => {
            let (key, value): (Bytes, Bytes) = args(bytes)?;
            ok(&dict.insert(key.0, value.0).map(Bytes))
        }
        "remove" => {
            let key: Bytes = args(bytes)?;
            ok(&Bytes(dict.remove(&key.0).ok_or_else(missing_key)?))
        }
        "pop" => {
            let key: Bytes = args(bytes)?;
            ok(&dict.remove(&key.0).map(Bytes))
        }
        "contains" => {
            let key: Bytes = args(bytes)?;
            ok(&dict.get(&key.0).is_some())
        }
        "len" => ok(&(dict.len() as u64)),
        "keys" => ok(&dict.iter().map(|(k, _)| Raw(k)).collect::<Vec<_>>()),
        "values" => ok(&dict.iter().map(|(_, v)| Raw(v)).collect::<Vec<_>>()),
        "items" => ok(&dict.iter().map(|(k, v)| (Raw(k), Raw(v))).collect::<Vec<_>>()),
        "update" => {
            let items: Vec<(Bytes, Bytes)> = args(bytes)?;
            for (key, value) in items {
                dict.insert(key.0, value.0);
            }
            unit()
        }
        "setdefault" => {
            let (key, default): (Bytes, Bytes) = args(bytes)?;
            if dict.get(&key.0).is_none() {
                dict.insert(key.0.clone(), default.0);
            }
            ok(&Raw(dict.get(&key.0).expect("just inserted")))
        }
        "popitem" => {
            let (key, value) = dict
                .pop_last()
                .ok_or_else(|| Error::new(ErrorKind::MissingKey, "popitem(): dictionary is empty"))?;
            ok(&(Bytes(key), Bytes(value)))
        }
        "clear" => {
            dict.clear();
            unit()
        }
        _ => Err(unknown(type_id, method)),
    }
}

// ---------------------------------------------------------------------------------- list

/// A list of encoded items, with a version that changes with every change (for the client's
/// read-sort-write-back).
pub(crate) struct List {
    items: Vec<Vec<u8>>,
    version: u64,
}

fn list_call(list: &mut List, type_id: &str, method: &str, bytes: &[u8]) -> Result<Vec<u8>> {
    let len = list.items.len();
    let position = |value: &[u8], items: &[Vec<u8>]| items.iter().position(|item| item == value);
    let changed =
        matches!(method, "set" | "push" | "extend" | "insert" | "pop" | "remove" | "reverse" | "clear");
    let result = match method {
        "len" => ok(&(len as u64)),
        "get" => {
            let i: u64 = args(bytes)?;
            let item = list.items.get(i as usize).ok_or_else(|| index_error("list", i, len))?;
            ok(&Raw(item))
        }
        "set" => {
            let (i, value): (u64, Bytes) = args(bytes)?;
            *list.items.get_mut(i as usize).ok_or_else(|| index_error("list assignment", i, len))? = value.0;
            unit()
        }
        "slice" => {
            let (start, end): (u64, u64) = args(bytes)?;
            if start > end || end > len as u64 {
                return Err(Error::new(
                    ErrorKind::IndexOutOfRange,
                    format!("range {start}..{end} out of range for length {len}"),
                ));
            }
            ok(&list.items[start as usize..end as usize].iter().map(|i| Raw(i)).collect::<Vec<_>>())
        }
        "push" => {
            let value: Bytes = args(bytes)?;
            list.items.push(value.0);
            unit()
        }
        "extend" => {
            let values: Vec<Bytes> = args(bytes)?;
            list.items.extend(values.into_iter().map(Bytes::into_vec));
            unit()
        }
        "insert" => {
            let (i, value): (u64, Bytes) = args(bytes)?;
            if i > len as u64 {
                return Err(index_error("list insertion", i, len));
            }
            list.items.insert(i as usize, value.0);
            unit()
        }
        "pop" => {
            let i: Option<u64> = args(bytes)?;
            let item = match i {
                None => list
                    .items
                    .pop()
                    .ok_or_else(|| Error::new(ErrorKind::IndexOutOfRange, "pop from empty list"))?,
                Some(i) if i < len as u64 => list.items.remove(i as usize),
                Some(i) => return Err(index_error("pop", i, len)),
            };
            ok(&Bytes(item))
        }
        "remove" => {
            let value: Bytes = args(bytes)?;
            let i = position(&value.0, &list.items)
                .ok_or_else(|| Error::new(ErrorKind::InvalidValue, "list.remove(x): x not in list"))?;
            list.items.remove(i);
            unit()
        }
        "index" => {
            let value: Bytes = args(bytes)?;
            let i = position(&value.0, &list.items)
                .ok_or_else(|| Error::new(ErrorKind::InvalidValue, "list.index(x): x not in list"))?;
            ok(&(i as u64))
        }
        "count" => {
            let value: Bytes = args(bytes)?;
            ok(&(list.items.iter().filter(|item| **item == value.0).count() as u64))
        }
        "contains" => {
            let value: Bytes = args(bytes)?;
            ok(&position(&value.0, &list.items).is_some())
        }
        "reverse" => {
            list.items.reverse();
            unit()
        }
        "clear" => {
            list.items.clear();
            unit()
        }
        "copy" => ok(&list.items.iter().map(|i| Raw(i)).collect::<Vec<_>>()),
        "snapshot" => ok(&(list.version, list.items.iter().map(|i| Raw(i)).collect::<Vec<_>>())),
        "replace" => {
            let (version, items): (Option<u64>, Vec<Bytes>) = args(bytes)?;
            if version.is_some_and(|v| v != list.version) {
                return ok(&false);
            }
            list.items = items.into_iter().map(Bytes::into_vec).collect();
            list.version += 1;
            ok(&true)
        }
        _ => Err(unknown(type_id, method)),
    };
    if changed && result.is_ok() {
        list.version += 1;
    }
    result
}

// ---------------------------------------------------------------------------------- Namespace

fn missing_attribute(name: &str) -> Error {
    Error::new(ErrorKind::MissingAttribute, format!("'Namespace' object has no attribute '{name}'"))
}

fn namespace_call(
    ns: &mut BTreeMap<String, Vec<u8>>,
    type_id: &str,
    method: &str,
    bytes: &[u8],
) -> Result<Vec<u8>> {
    match method {
        "get" => {
            let name: String = args(bytes)?;
            ok(&Raw(ns.get(&name).ok_or_else(|| missing_attribute(&name))?))
        }
        "set" => {
            let (name, value): (String, Bytes) = args(bytes)?;
            ns.insert(name, value.0);
            unit()
        }
        "remove" => {
            let name: String = args(bytes)?;
            ns.remove(&name).ok_or_else(|| missing_attribute(&name))?;
            unit()
        }
        "contains" => {
            let name: String = args(bytes)?;
            ok(&ns.contains_key(&name))
        }
        "names" => ok(&ns.keys().collect::<Vec<_>>()),
        _ => Err(unknown(type_id, method)),
    }
}

// ---------------------------------------------------------------------------------- Value

fn value_call(value: &mut Vec<u8>, type_id: &str, method: &str, bytes: &[u8]) -> Result<Vec<u8>> {
    match method {
        "get" => ok(&Raw(value)),
        "set" => {
            let new: Bytes = args(bytes)?;
            *value = new.0;
            unit()
        }
        "swap" => {
            let new: Bytes = args(bytes)?;
            ok(&Bytes(std::mem::replace(value, new.0)))
        }
        "compare_and_set" => {
            let (current, new): (Bytes, Bytes) = args(bytes)?;
            let equal = *value == current.0;
            if equal {
                *value = new.0;
            }
            ok(&equal)
        }
        "update" => {
            let (current, new): (Bytes, Bytes) = args(bytes)?;
            if *value == current.0 {
                *value = new.0;
                ok(&(true, Raw(&[])))
            } else {
                ok(&(false, Raw(value)))
            }
        }
        _ => Err(unknown(type_id, method)),
    }
}

// ---------------------------------------------------------------------------------- Array

fn array_call(array: &mut [Vec<u8>], type_id: &str, method: &str, bytes: &[u8]) -> Result<Vec<u8>> {
    let len = array.len();
    match method {
        "len" => ok(&(len as u64)),
        "get" => {
            let i: u64 = args(bytes)?;
            ok(&Raw(array.get(i as usize).ok_or_else(|| index_error("array", i, len))?))
        }
        "set" => {
            let (i, value): (u64, Bytes) = args(bytes)?;
            *array.get_mut(i as usize).ok_or_else(|| index_error("array assignment", i, len))? = value.0;
            unit()
        }
        "copy" => ok(&array.iter().map(|i| Raw(i)).collect::<Vec<_>>()),
        "assign" => {
            let items: Vec<Bytes> = args(bytes)?;
            if items.len() != len {
                return Err(Error::new(
                    ErrorKind::InvalidValue,
                    format!("cannot assign {} items to an array of length {len}", items.len()),
                ));
            }
            for (slot, item) in array.iter_mut().zip(items) {
                *slot = item.0;
            }
            unit()
        }
        _ => Err(unknown(type_id, method)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_insertion_order_through_removals() {
        let mut dict = Dict::default();
        for i in 0..100u8 {
            dict.insert(vec![i], vec![i, i]);
        }
        for i in (0..100u8).filter(|i| i % 3 != 0) {
            assert_eq!(dict.remove(&[i]), Some(vec![i, i]));
        }
        assert_eq!(dict.insert(vec![3], vec![0]), Some(vec![3, 3]));
        let keys: Vec<u8> = dict.iter().map(|(k, _)| k[0]).collect();
        assert_eq!(keys, (0..100u8).filter(|i| i % 3 == 0).collect::<Vec<_>>());
        assert_eq!(dict.get(&[3]), Some(&[0u8][..]));
        assert_eq!(dict.pop_last(), Some((vec![99], vec![99, 99])));
        assert_eq!(dict.len(), 33);
        assert!(dict.entries.len() < 100, "holes were compacted");
    }
}
