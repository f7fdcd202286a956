//! Proxies of the containers: dict, list, Namespace, Value, Array.
//!
//! The server keeps their values as encoded bytes and never decodes them: keys and values are
//! compared by their encodings (equal values of the usual types encode equally; `-0.0` and
//! `0.0` do not, and a `NaN` equals itself). What needs the values' order (`sort`) happens in
//! the client and is written back only if nothing changed meanwhile.

use std::borrow::Borrow;
use std::marker::PhantomData;
use std::ops::Range;

use multiproc_wire::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{AnyProxy, type_ids, typed_proxy};
use crate::error::{Error, ErrorKind, Result};
use crate::protocol::{decode_value, encode_value};

/// How often `sort` and `update` retry when another client changed the object meanwhile.
const MAX_RETRIES: usize = 1000;

fn decode_all<T: DeserializeOwned>(items: Vec<Bytes>) -> Result<Vec<T>> {
    items.iter().map(|b| decode_value(&b.0)).collect()
}

fn encode_all<'a, T: Serialize + 'a>(items: impl IntoIterator<Item = &'a T>) -> Result<Vec<Bytes>> {
    items.into_iter().map(encode_value).collect()
}

// ---------------------------------------------------------------------------------- dict

/// A proxy of a dict in the server (CPython's `DictProxy`): keys `K`, values `V`, in insertion
/// order.
///
/// Keys are compared by their encoding, so `K` needs no `Hash` here; methods take anything `K`
/// borrows as (`&str` for `String` keys).
///
/// ```no_run
/// let manager = multiproc_manager::Manager::start()?;
/// let d = manager.dict::<String, i64>()?;
/// d.set("one", &1)?;
/// assert_eq!(d.get("one")?, Some(1));
/// assert_eq!(d.remove("two").unwrap_err().kind(), multiproc_manager::ErrorKind::MissingKey);
/// # Ok::<(), multiproc_manager::Error>(())
/// ```
pub struct DictProxy<K, V> {
    proxy: AnyProxy,
    types: PhantomData<fn() -> (K, V)>,
}

typed_proxy!(DictProxy<K, V>, type_ids::DICT);

impl<K: Serialize + DeserializeOwned, V: Serialize + DeserializeOwned> DictProxy<K, V> {
    /// The value for `key`, if any (`d.get(key)`).
    ///
    /// # Errors
    /// [`ErrorKind::Disconnected`] when the server has gone, [`ErrorKind::Codec`] when a value
    /// does not encode or decode (this holds for every method).
    pub fn get<Q: Serialize + ?Sized>(&self, key: &Q) -> Result<Option<V>>
    where
        K: Borrow<Q>,
    {
        let value: Option<Bytes> = self.proxy.call("get", &encode_value(key)?)?;
        value.map(|v| decode_value(&v.0)).transpose()
    }

    /// The value for `key` (`d[key]`).
    ///
    /// # Errors
    /// [`ErrorKind::MissingKey`] when there is none.
    pub fn get_item<Q: Serialize + ?Sized>(&self, key: &Q) -> Result<V>
    where
        K: Borrow<Q>,
    {
        let value: Bytes = self.proxy.call("get_item", &encode_value(key)?)?;
        decode_value(&value.0)
    }

    /// Sets `key` to `value` (`d[key] = value`).
    ///
    /// # Errors
    /// See [`get`](DictProxy::get).
    pub fn set<Q: Serialize + ?Sized, W: Serialize + ?Sized>(&self, key: &Q, value: &W) -> Result<()>
    where
        K: Borrow<Q>,
        V: Borrow<W>,
    {
        self.proxy.call("set", &(encode_value(key)?, encode_value(value)?))
    }

    /// Sets `key` to `value`; returns the value it replaced.
    ///
    /// # Errors
    /// See [`get`](DictProxy::get).
    pub fn insert<Q: Serialize + ?Sized, W: Serialize + ?Sized>(
        &self,
        key: &Q,
        value: &W,
    ) -> Result<Option<V>>
    where
        K: Borrow<Q>,
        V: Borrow<W>,
    {
        let old: Option<Bytes> = self.proxy.call("insert", &(encode_value(key)?, encode_value(value)?))?;
        old.map(|v| decode_value(&v.0)).transpose()
    }

    /// Removes `key` and returns its value (`d.pop(key)`).
    ///
    /// # Errors
    /// [`ErrorKind::MissingKey`] when there is none.
    pub fn remove<Q: Serialize + ?Sized>(&self, key: &Q) -> Result<V>
    where
        K: Borrow<Q>,
    {
        let value: Bytes = self.proxy.call("remove", &encode_value(key)?)?;
        decode_value(&value.0)
    }

    /// Removes `key` if present and returns its value (`d.pop(key, None)`).
    ///
    /// # Errors
    /// See [`get`](DictProxy::get).
    pub fn pop<Q: Serialize + ?Sized>(&self, key: &Q) -> Result<Option<V>>
    where
        K: Borrow<Q>,
    {
        let value: Option<Bytes> = self.proxy.call("pop", &encode_value(key)?)?;
        value.map(|v| decode_value(&v.0)).transpose()
    }

    /// Whether `key` is present (`key in d`).
    ///
    /// # Errors
    /// See [`get`](DictProxy::get).
    pub fn contains_key<Q: Serialize + ?Sized>(&self, key: &Q) -> Result<bool>
    where
        K: Borrow<Q>,
    {
        self.proxy.call("contains", &encode_value(key)?)
    }

    /// The number of entries.
    ///
    /// # Errors
    /// See [`get`](DictProxy::get).
    pub fn len(&self) -> Result<usize> {
        self.proxy.call::<_, u64>("len", &()).map(|n| n as usize)
    }

    /// Whether there is no entry.
    ///
    /// # Errors
    /// See [`get`](DictProxy::get).
    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }

    /// The keys, in insertion order.
    ///
    /// # Errors
    /// See [`get`](DictProxy::get).
    pub fn keys(&self) -> Result<Vec<K>> {
        decode_all(self.proxy.call("keys", &())?)
    }

    /// The values, in insertion order.
    ///
    /// # Errors
    /// See [`get`](DictProxy::get).
    pub fn values(&self) -> Result<Vec<V>> {
        decode_all(self.proxy.call("values", &())?)
    }

    /// The entries, in insertion order.
    ///
    /// # Errors
    /// See [`get`](DictProxy::get).
    pub fn items(&self) -> Result<Vec<(K, V)>> {
        let items: Vec<(Bytes, Bytes)> = self.proxy.call("items", &())?;
        items.into_iter().map(|(k, v)| Ok((decode_value(&k.0)?, decode_value(&v.0)?))).collect()
    }

    /// A copy of the whole dict, in any collection of pairs (`HashMap`, `BTreeMap`, `Vec`).
    ///
    /// # Errors
    /// See [`get`](DictProxy::get).
    pub fn copy<C: FromIterator<(K, V)>>(&self) -> Result<C> {
        Ok(self.items()?.into_iter().collect())
    }

    /// Sets every entry of `items`, in one request (`d.update(items)`).
    ///
    /// # Errors
    /// See [`get`](DictProxy::get).
    pub fn update<I: IntoIterator<Item = (K, V)>>(&self, items: I) -> Result<()> {
        let items: Vec<(Bytes, Bytes)> = items
            .into_iter()
            .map(|(k, v)| Ok((encode_value(&k)?, encode_value(&v)?)))
            .collect::<Result<_>>()?;
        self.proxy.call("update", &items)
    }

    /// The value for `key`, after setting it to `default` if it was missing
    /// (`d.setdefault(key, default)`).
    ///
    /// # Errors
    /// See [`get`](DictProxy::get).
    pub fn setdefault<Q: Serialize + ?Sized, W: Serialize + ?Sized>(&self, key: &Q, default: &W) -> Result<V>
    where
        K: Borrow<Q>,
        V: Borrow<W>,
    {
        let value: Bytes = self.proxy.call("setdefault", &(encode_value(key)?, encode_value(default)?))?;
        decode_value(&value.0)
    }

    /// Removes and returns the last entry inserted (`d.popitem()`).
    ///
    /// # Errors
    /// [`ErrorKind::MissingKey`] when the dict is empty.
    pub fn popitem(&self) -> Result<(K, V)> {
        let (k, v): (Bytes, Bytes) = self.proxy.call("popitem", &())?;
        Ok((decode_value(&k.0)?, decode_value(&v.0)?))
    }

    /// Removes every entry.
    ///
    /// # Errors
    /// See [`get`](DictProxy::get).
    pub fn clear(&self) -> Result<()> {
        self.proxy.call("clear", &())
    }
}

// ---------------------------------------------------------------------------------- list

/// A proxy of a list in the server (CPython's `ListProxy`).
///
/// Indexes are `usize` and checked: one past the end is [`ErrorKind::IndexOutOfRange`] (no
/// negative indexes). Values are compared by their encoding (`index`, `remove`, `count`).
///
/// ```no_run
/// let manager = multiproc_manager::Manager::start()?;
/// let l = manager.list_from(0..5)?;
/// l.reverse()?;
/// assert_eq!(l.copy()?, [4, 3, 2, 1, 0]);
/// assert_eq!(l.get(9).unwrap_err().kind(), multiproc_manager::ErrorKind::IndexOutOfRange);
/// # Ok::<(), multiproc_manager::Error>(())
/// ```
pub struct ListProxy<T> {
    proxy: AnyProxy,
    types: PhantomData<fn() -> T>,
}

typed_proxy!(ListProxy<T>, type_ids::LIST);

impl<T: Serialize + DeserializeOwned> ListProxy<T> {
    /// The number of items.
    ///
    /// # Errors
    /// [`ErrorKind::Disconnected`] when the server has gone, [`ErrorKind::Codec`] when a value
    /// does not encode or decode (this holds for every method).
    pub fn len(&self) -> Result<usize> {
        self.proxy.call::<_, u64>("len", &()).map(|n| n as usize)
    }

    /// Whether the list is empty.
    ///
    /// # Errors
    /// See [`len`](ListProxy::len).
    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }

    /// The item at `index` (`l[index]`).
    ///
    /// # Errors
    /// [`ErrorKind::IndexOutOfRange`].
    pub fn get(&self, index: usize) -> Result<T> {
        let item: Bytes = self.proxy.call("get", &(index as u64))?;
        decode_value(&item.0)
    }

    /// Replaces the item at `index` (`l[index] = value`).
    ///
    /// # Errors
    /// [`ErrorKind::IndexOutOfRange`].
    pub fn set<Q: Serialize + ?Sized>(&self, index: usize, value: &Q) -> Result<()>
    where
        T: Borrow<Q>,
    {
        self.proxy.call("set", &(index as u64, encode_value(value)?))
    }

    /// The items `range.start..range.end` (`l[a:b]`).
    ///
    /// # Errors
    /// [`ErrorKind::IndexOutOfRange`] when the range does not lie within the list.
    pub fn slice(&self, range: Range<usize>) -> Result<Vec<T>> {
        decode_all(self.proxy.call("slice", &(range.start as u64, range.end as u64))?)
    }

    /// Appends `value` (`l.append(value)`).
    ///
    /// # Errors
    /// See [`len`](ListProxy::len).
    pub fn push<Q: Serialize + ?Sized>(&self, value: &Q) -> Result<()>
    where
        T: Borrow<Q>,
    {
        self.proxy.call("push", &encode_value(value)?)
    }

    /// Appends every item of `items`, in one request (`l.extend(items)`).
    ///
    /// # Errors
    /// See [`len`](ListProxy::len).
    pub fn extend<I: IntoIterator<Item = T>>(&self, items: I) -> Result<()> {
        let items: Vec<Bytes> = items.into_iter().map(|v| encode_value(&v)).collect::<Result<_>>()?;
        self.proxy.call("extend", &items)
    }

    /// Inserts `value` before `index`; `index == len` appends (`l.insert(index, value)`).
    ///
    /// # Errors
    /// [`ErrorKind::IndexOutOfRange`] when `index > len`.
    pub fn insert<Q: Serialize + ?Sized>(&self, index: usize, value: &Q) -> Result<()>
    where
        T: Borrow<Q>,
    {
        self.proxy.call("insert", &(index as u64, encode_value(value)?))
    }

    /// Removes and returns the last item (`l.pop()`).
    ///
    /// # Errors
    /// [`ErrorKind::IndexOutOfRange`] when the list is empty.
    pub fn pop(&self) -> Result<T> {
        let item: Bytes = self.proxy.call("pop", &None::<u64>)?;
        decode_value(&item.0)
    }

    /// Removes and returns the item at `index` (`l.pop(index)`).
    ///
    /// # Errors
    /// [`ErrorKind::IndexOutOfRange`].
    pub fn remove_at(&self, index: usize) -> Result<T> {
        let item: Bytes = self.proxy.call("pop", &Some(index as u64))?;
        decode_value(&item.0)
    }

    /// Removes the first item equal to `value` (`l.remove(value)`).
    ///
    /// # Errors
    /// [`ErrorKind::InvalidValue`] when there is none.
    pub fn remove<Q: Serialize + ?Sized>(&self, value: &Q) -> Result<()>
    where
        T: Borrow<Q>,
    {
        self.proxy.call("remove", &encode_value(value)?)
    }

    /// The index of the first item equal to `value` (`l.index(value)`).
    ///
    /// # Errors
    /// [`ErrorKind::InvalidValue`] when there is none.
    pub fn index<Q: Serialize + ?Sized>(&self, value: &Q) -> Result<usize>
    where
        T: Borrow<Q>,
    {
        self.proxy.call::<_, u64>("index", &encode_value(value)?).map(|i| i as usize)
    }

    /// How many items equal `value` (`l.count(value)`).
    ///
    /// # Errors
    /// See [`len`](ListProxy::len).
    pub fn count<Q: Serialize + ?Sized>(&self, value: &Q) -> Result<usize>
    where
        T: Borrow<Q>,
    {
        self.proxy.call::<_, u64>("count", &encode_value(value)?).map(|n| n as usize)
    }

    /// Whether an item equals `value` (`value in l`).
    ///
    /// # Errors
    /// See [`len`](ListProxy::len).
    pub fn contains<Q: Serialize + ?Sized>(&self, value: &Q) -> Result<bool>
    where
        T: Borrow<Q>,
    {
        self.proxy.call("contains", &encode_value(value)?)
    }

    /// Reverses the list in place, in the server (`l.reverse()`).
    ///
    /// # Errors
    /// See [`len`](ListProxy::len).
    pub fn reverse(&self) -> Result<()> {
        self.proxy.call("reverse", &())
    }

    /// Removes every item.
    ///
    /// # Errors
    /// See [`len`](ListProxy::len).
    pub fn clear(&self) -> Result<()> {
        self.proxy.call("clear", &())
    }

    /// A copy of the whole list (`l[:]`).
    ///
    /// # Errors
    /// See [`len`](ListProxy::len).
    pub fn copy(&self) -> Result<Vec<T>> {
        decode_all(self.proxy.call("copy", &())?)
    }

    /// Replaces the whole content with `items` (`l[:] = items`).
    ///
    /// # Errors
    /// See [`len`](ListProxy::len).
    pub fn assign(&self, items: &[T]) -> Result<()> {
        let _: bool = self.proxy.call("replace", &(None::<u64>, encode_all(items)?))?;
        Ok(())
    }

    /// Sorts the list (`l.sort()`), stably.
    ///
    /// The server stores encoded bytes and cannot compare them, so the client fetches the list
    /// with its version, sorts it and writes it back only if the list did not change meanwhile
    /// (else it starts again): the sort is atomic for every other client.
    ///
    /// # Errors
    /// See [`len`](ListProxy::len); [`ErrorKind::Timeout`] when other clients changed the list
    /// before every one of many attempts could finish.
    pub fn sort(&self) -> Result<()>
    where
        T: Ord,
    {
        self.sort_by(T::cmp)
    }

    /// Sorts the list with a comparison function, as [`sort`](ListProxy::sort) does.
    ///
    /// # Errors
    /// As [`sort`](ListProxy::sort).
    pub fn sort_by<F: FnMut(&T, &T) -> std::cmp::Ordering>(&self, mut compare: F) -> Result<()> {
        self.rewrite(|items| items.sort_by(&mut compare))
    }

    /// Sorts the list by a key, as [`sort`](ListProxy::sort) does (`l.sort(key=f)`).
    ///
    /// # Errors
    /// As [`sort`](ListProxy::sort).
    pub fn sort_by_key<U: Ord, F: FnMut(&T) -> U>(&self, mut key: F) -> Result<()> {
        self.rewrite(|items| items.sort_by_key(&mut key))
    }

    /// Fetches the list with its version, changes it here, writes it back if unchanged.
    fn rewrite(&self, mut change: impl FnMut(&mut Vec<T>)) -> Result<()> {
        for _ in 0..MAX_RETRIES {
            let (version, items): (u64, Vec<Bytes>) = self.proxy.call("snapshot", &())?;
            let mut items = decode_all(items)?;
            change(&mut items);
            if self.proxy.call("replace", &(Some(version), encode_all(&items)?))? {
                return Ok(());
            }
        }
        Err(Error::new(ErrorKind::Timeout, "the list kept changing while it was being sorted"))
    }
}

// ---------------------------------------------------------------------------------- Namespace

/// A proxy of a namespace in the server (CPython's `Namespace`): named attributes, each of any
/// serde type, chosen when it is read.
///
/// ```no_run
/// let manager = multiproc_manager::Manager::start()?;
/// let ns = manager.namespace()?;
/// ns.set("x", &10)?;
/// ns.set("name", "fred")?;
/// assert_eq!(ns.get::<i32>("x")?, 10);
/// assert_eq!(ns.get::<String>("name")?, "fred");
/// # Ok::<(), multiproc_manager::Error>(())
/// ```
pub struct NamespaceProxy {
    proxy: AnyProxy,
}

typed_proxy!(NamespaceProxy, type_ids::NAMESPACE);

impl NamespaceProxy {
    /// The attribute `name` as a `T` (`ns.name`).
    ///
    /// # Errors
    /// [`ErrorKind::MissingAttribute`]; [`ErrorKind::Codec`] when it is not a `T`.
    pub fn get<T: DeserializeOwned>(&self, name: &str) -> Result<T> {
        let value: Bytes = self.proxy.call("get", name)?;
        decode_value(&value.0)
    }

    /// Sets the attribute `name` (`ns.name = value`).
    ///
    /// # Errors
    /// [`ErrorKind::Disconnected`], [`ErrorKind::Codec`].
    pub fn set<T: Serialize + ?Sized>(&self, name: &str, value: &T) -> Result<()> {
        self.proxy.call("set", &(name, encode_value(value)?))
    }

    /// Removes the attribute `name` (`del ns.name`).
    ///
    /// # Errors
    /// [`ErrorKind::MissingAttribute`].
    pub fn remove(&self, name: &str) -> Result<()> {
        self.proxy.call("remove", name)
    }

    /// Whether the attribute `name` exists (`hasattr(ns, name)`).
    ///
    /// # Errors
    /// [`ErrorKind::Disconnected`].
    pub fn contains(&self, name: &str) -> Result<bool> {
        self.proxy.call("contains", name)
    }

    /// The attributes' names, sorted.
    ///
    /// # Errors
    /// [`ErrorKind::Disconnected`].
    pub fn names(&self) -> Result<Vec<String>> {
        self.proxy.call("names", &())
    }
}

// ---------------------------------------------------------------------------------- Value

/// A proxy of a single value in the server (CPython's `manager.Value`).
///
/// Unlike CPython's, [`update`](ValueProxy::update) changes the value atomically with respect
/// to every other client.
///
/// ```no_run
/// let manager = multiproc_manager::Manager::start()?;
/// let v = manager.value(&1.5f64)?;
/// assert_eq!(v.update(|x| x * 2.0)?, 3.0);
/// # Ok::<(), multiproc_manager::Error>(())
/// ```
pub struct ValueProxy<T> {
    proxy: AnyProxy,
    types: PhantomData<fn() -> T>,
}

typed_proxy!(ValueProxy<T>, type_ids::VALUE);

impl<T: Serialize + DeserializeOwned> ValueProxy<T> {
    /// The value (`v.value`).
    ///
    /// # Errors
    /// [`ErrorKind::Disconnected`], [`ErrorKind::Codec`] (this holds for every method).
    pub fn get(&self) -> Result<T> {
        let value: Bytes = self.proxy.call("get", &())?;
        decode_value(&value.0)
    }

    /// Sets the value (`v.value = value`).
    ///
    /// # Errors
    /// See [`get`](ValueProxy::get).
    pub fn set<Q: Serialize + ?Sized>(&self, value: &Q) -> Result<()>
    where
        T: Borrow<Q>,
    {
        self.proxy.call("set", &encode_value(value)?)
    }

    /// Sets the value and returns the one it replaced.
    ///
    /// # Errors
    /// See [`get`](ValueProxy::get).
    pub fn swap<Q: Serialize + ?Sized>(&self, value: &Q) -> Result<T>
    where
        T: Borrow<Q>,
    {
        let old: Bytes = self.proxy.call("swap", &encode_value(value)?)?;
        decode_value(&old.0)
    }

    /// Sets the value to `new` if it equals `current` (compared by encoding); returns whether
    /// it did.
    ///
    /// # Errors
    /// See [`get`](ValueProxy::get).
    pub fn compare_and_set(&self, current: &T, new: &T) -> Result<bool> {
        self.proxy.call("compare_and_set", &(encode_value(current)?, encode_value(new)?))
    }

    /// Replaces the value with `f(value)` atomically (retrying if another client changed it
    /// meanwhile); returns the new value.
    ///
    /// # Errors
    /// See [`get`](ValueProxy::get); [`ErrorKind::Timeout`] when other clients changed the
    /// value before every one of many attempts could finish.
    pub fn update(&self, mut f: impl FnMut(&T) -> T) -> Result<T> {
        let mut current: Bytes = self.proxy.call("get", &())?;
        for _ in 0..MAX_RETRIES {
            let new = f(&decode_value(&current.0)?);
            let encoded = encode_value(&new)?;
            let (done, now): (bool, Bytes) = self.proxy.call("update", &(current, encoded))?;
            if done {
                return Ok(new);
            }
            current = now;
        }
        Err(Error::new(ErrorKind::Timeout, "the value kept changing while it was being updated"))
    }
}

// ---------------------------------------------------------------------------------- Array

/// A proxy of a fixed-length array in the server (CPython's `manager.Array`).
///
/// ```no_run
/// let manager = multiproc_manager::Manager::start()?;
/// let a = manager.array(&[0u32; 4])?;
/// a.set(2, &7)?;
/// assert_eq!(a.copy()?, [0, 0, 7, 0]);
/// # Ok::<(), multiproc_manager::Error>(())
/// ```
pub struct ArrayProxy<T> {
    proxy: AnyProxy,
    types: PhantomData<fn() -> T>,
}

typed_proxy!(ArrayProxy<T>, type_ids::ARRAY);

impl<T: Serialize + DeserializeOwned> ArrayProxy<T> {
    /// The length, fixed when the array was made.
    ///
    /// # Errors
    /// [`ErrorKind::Disconnected`], [`ErrorKind::Codec`] (this holds for every method).
    pub fn len(&self) -> Result<usize> {
        self.proxy.call::<_, u64>("len", &()).map(|n| n as usize)
    }

    /// Whether the array has no element.
    ///
    /// # Errors
    /// See [`len`](ArrayProxy::len).
    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }

    /// The element at `index`.
    ///
    /// # Errors
    /// [`ErrorKind::IndexOutOfRange`].
    pub fn get(&self, index: usize) -> Result<T> {
        let item: Bytes = self.proxy.call("get", &(index as u64))?;
        decode_value(&item.0)
    }

    /// Replaces the element at `index`.
    ///
    /// # Errors
    /// [`ErrorKind::IndexOutOfRange`].
    pub fn set<Q: Serialize + ?Sized>(&self, index: usize, value: &Q) -> Result<()>
    where
        T: Borrow<Q>,
    {
        self.proxy.call("set", &(index as u64, encode_value(value)?))
    }

    /// A copy of the whole array (`a[:]`).
    ///
    /// # Errors
    /// See [`len`](ArrayProxy::len).
    pub fn copy(&self) -> Result<Vec<T>> {
        decode_all(self.proxy.call("copy", &())?)
    }

    /// Replaces every element (`a[:] = items`).
    ///
    /// # Errors
    /// [`ErrorKind::InvalidValue`] when `items` has another length.
    pub fn assign(&self, items: &[T]) -> Result<()> {
        self.proxy.call("assign", &encode_all(items)?)
    }
}
