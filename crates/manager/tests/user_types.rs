//! Tests for registered types and callables: objects of a user's type made in the server and
//! called by name, their errors and panics coming back typed, and callables handing out the
//! server's objects (CPython's `BaseManager.register`).

mod common;

use common::*;
use multiproc_manager::{
    AnyProxy, Args, ErrorKind, Managed, Manager, ManagerServer, Proxy, QueueProxy, Reply, Result,
};
use multiproc_process::{Process, StartMethod};

/// A bank account: a user type with a user error and a method that panics.
struct Account {
    owner: String,
    balance: i64,
}

impl Managed for Account {
    const TYPE_ID: &'static str = "Account";
    type Init = (String, i64);

    fn create((owner, balance): (String, i64)) -> Result<Account> {
        if balance < 0 {
            return Err(multiproc_manager::Error::user("an account cannot open overdrawn"));
        }
        Ok(Account { owner, balance })
    }

    fn call(&mut self, method: &str, args: Args<'_>) -> Result<Reply> {
        match method {
            "deposit" => {
                let amount: i64 = args.decode()?;
                self.balance += amount;
                Reply::encode(&self.balance)
            }
            "withdraw" => {
                let amount: i64 = args.decode()?;
                if amount > self.balance {
                    return Err(multiproc_manager::Error::user(format!(
                        "{} cannot withdraw {amount}: the balance is {}",
                        self.owner, self.balance
                    )));
                }
                self.balance -= amount;
                Reply::encode(&self.balance)
            }
            "statement" => Reply::encode(&(self.owner.as_str(), self.balance)),
            "audit" => panic!("the auditor is out"),
            "close" => Ok(Reply::unit()),
            _ => Err(multiproc_manager::Error::unknown_method(Self::TYPE_ID, method)),
        }
    }
}

/// A typed wrapper, as a user would write one.
struct AccountProxy(Proxy<Account>);

impl AccountProxy {
    fn deposit(&self, amount: i64) -> Result<i64> {
        self.0.call("deposit", &amount)
    }

    fn withdraw(&self, amount: i64) -> Result<i64> {
        self.0.call("withdraw", &amount)
    }
}

/// Registers the account type, and callables: `bank_queue` hands every client the same queue,
/// `open` opens an account per call.
fn setup(server: &ManagerServer) -> Result<()> {
    server.register::<Account>()?;
    let manager = server.manager()?;
    let queue: QueueProxy<String> = manager.queue()?;
    queue.put("opened")?;
    server.register_callable("bank_queue", move |()| Ok(queue.clone()))?;
    server.register_callable("open", move |(owner, balance): (String, i64)| {
        manager.create::<Account>(&(owner, balance))
    })?;
    server.register_callable("broken", |()| -> Result<AnyProxy> { panic!("the callable broke") })?;
    Ok(())
}

/// Deposits into an account received from the parent.
fn deposit_in_child(account: Proxy<Account>) -> i64 {
    AccountProxy(account).deposit(5).expect("deposit in the child")
}

/// An error's text with its sources.
fn chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(err) = source {
        text = format!("{text}: {err}");
        source = err.source();
    }
    text
}

#[test]
fn refuses_values_arguments_and_results_of_another_type() {
    scenario(|| {
        let manager = Manager::builder().setup(setup).start().expect("start");
        // A value kept by the server, read as another type than it was stored as (untyped,
        // an empty String reads as the u64 0).
        let ns = manager.namespace().unwrap();
        ns.set("name", &String::new()).unwrap();
        let err = ns.get::<u64>("name").expect_err("a String was read as a u64");
        assert_eq!(err.kind(), ErrorKind::Codec, "{err:?}");
        let text = chain(&err);
        assert!(text.contains("expected a `u64`, found a `alloc::string::String`"), "{text}");
        assert_eq!(ns.get::<String>("name").unwrap(), "");
        // A registered type's method given arguments of another type than it decodes.
        let account = AccountProxy(manager.create::<Account>(&("bo".into(), 10)).expect("create"));
        let err =
            account.0.call::<_, i64>("deposit", &String::new()).expect_err("a String was taken as an i64");
        assert_eq!(err.kind(), ErrorKind::BadRequest, "{err:?}");
        assert!(chain(&err).contains("expected a `i64`"), "{}", chain(&err));
        // Its result read as another type than it returns.
        let err = account.0.call::<_, f64>("deposit", &1i64).expect_err("an i64 was read as an f64");
        assert_eq!(err.kind(), ErrorKind::Codec, "{err:?}");
        assert!(chain(&err).contains("expected a `f64`"), "{}", chain(&err));
        // The object and the connection are fine: only the typed deposit of 1 happened.
        assert_eq!(account.deposit(1).unwrap(), 12);
        account.0.call::<_, ()>("close", &()).unwrap();
    });
}

#[test]
fn calls_registered_types() {
    scenario(|| {
        for method in METHODS {
            let manager = Manager::builder().start_method(method).setup(setup).start().expect("start");
            let account = AccountProxy(manager.create::<Account>(&("ann".into(), 10)).expect("create"));
            assert_eq!(account.deposit(5).unwrap(), 15);
            assert_eq!(account.withdraw(3).unwrap(), 12);
            let err = account.withdraw(100).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::User);
            assert_eq!(err.to_string(), "ann cannot withdraw 100: the balance is 12");
            let err = account.0.call::<_, ()>("transfer", &()).unwrap_err();
            assert_eq!(
                (err.kind(), err.to_string().as_str()),
                (ErrorKind::UnknownMethod, "'Account' object has no method 'transfer'")
            );
            let err = account.0.call::<_, i64>("deposit", "not a number").unwrap_err();
            assert_eq!(err.kind(), ErrorKind::BadRequest, "{err}");
            let err = account.0.call::<_, ()>("audit", &()).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Panicked);
            assert!(err.to_string().contains("the auditor is out"), "{err}");
            // None of it hurt the object, the connection or the server.
            let statement: (String, i64) = account.0.call("statement", &()).unwrap();
            assert_eq!(statement, ("ann".to_string(), 12));
            account.0.call::<_, ()>("close", &()).unwrap();

            let mut child = Process::new(deposit_in_child, account.0.clone());
            child.set_start_method(method);
            child.start().unwrap();
            assert_eq!(child.result().unwrap(), 17);

            let err = manager.create::<Account>(&("bob".into(), -1)).map(drop).unwrap_err();
            assert_eq!(
                (err.kind(), err.to_string().as_str()),
                (ErrorKind::User, "an account cannot open overdrawn")
            );
        }
    });
}

#[test]
fn serves_registered_callables() {
    scenario(|| {
        let manager =
            Manager::builder().start_method(StartMethod::ForkServer).setup(setup).start().expect("start");
        let queue: QueueProxy<String> = manager.call("bank_queue", &()).expect("get the queue");
        assert_eq!(queue.get_timeout(LIMIT).unwrap(), "opened", "the queue the setup made");
        queue.put("again").unwrap();
        let same: QueueProxy<String> = manager.call("bank_queue", &()).expect("get it again");
        assert_eq!(same.get_timeout(LIMIT).unwrap(), "again");
        let account = AccountProxy(manager.call("open", &("cy".to_string(), 1i64)).expect("open"));
        assert_eq!(account.deposit(1).unwrap(), 2);
        let any = manager.call_any("open", &("di".to_string(), 0i64)).unwrap();
        assert_eq!(any.type_id(), "Account");

        let err = manager.call::<_, QueueProxy<String>>("open", &("ed".to_string(), 0i64)).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::WrongType);
        let err = manager.call_any("missing", &()).unwrap_err();
        assert_eq!(
            (err.kind(), err.to_string().as_str()),
            (ErrorKind::UnknownType, "no callable named 'missing' is registered")
        );
        let err = manager.call_any("open", &"wrong arguments").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::BadRequest);
        let err = manager.call_any("broken", &()).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Panicked);
        let err = manager.call_any("open", &("fay".to_string(), -5i64)).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::User);
        assert_eq!(queue.len().unwrap(), 0, "still serving");
    });
}

fn setup_failing(_: &ManagerServer) -> Result<()> {
    Err(multiproc_manager::Error::user("no configuration found"))
}

fn setup_taking_builtin_name(server: &ManagerServer) -> Result<()> {
    struct Fake;
    impl Managed for Fake {
        const TYPE_ID: &'static str = "dict";
        type Init = ();
        fn create((): ()) -> Result<Fake> {
            Ok(Fake)
        }
        fn call(&mut self, _: &str, _: Args<'_>) -> Result<Reply> {
            Ok(Reply::unit())
        }
    }
    server.register::<Fake>()
}

#[test]
fn reports_setup_failures() {
    scenario(|| {
        let err = Manager::builder().setup(setup_failing).start().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Start);
        assert!(err.to_string().contains("no configuration found"), "{err}");
        let err = Manager::builder().setup(setup_taking_builtin_name).start().unwrap_err();
        assert!(err.to_string().contains("'dict' cannot name a registered type"), "{err}");
        // A type the server does not know.
        let manager = start(StartMethod::ForkServer);
        let err = manager.create::<Account>(&("x".into(), 1)).map(drop).unwrap_err();
        assert_eq!(
            (err.kind(), err.to_string().as_str()),
            (ErrorKind::UnknownType, "no type named 'Account' is registered")
        );
    });
}
