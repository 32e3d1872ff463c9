//! Runs the project's real Lua scripts inside the sim Redis, with Lua 5.1 as Redis embeds it:
//! `KEYS`, `ARGV`, `redis.call` (errors abort the script), `redis.pcall` (errors come back as
//! `{err = ...}`), `redis.status_reply`, `redis.error_reply`, and Redis's conversion rules between
//! Lua values and replies. A script runs to completion without yielding: atomic, as in Redis.

use std::collections::BTreeMap;
use std::time::Duration;

use mlua::{Function, Lua, MultiValue, Table, Value as LuaValue};

use super::data::{Keyspace, Refusal, Reply};

/// Commands a script may not run (they would nest scripts or break atomicity).
const FORBIDDEN: &[&str] = &["EVAL", "EVALSHA", "SCRIPT", "MULTI", "EXEC", "SUBSCRIBE"];

fn to_lua(lua: &Lua, reply: Reply) -> mlua::Result<LuaValue> {
    Ok(match reply {
        Reply::Int(n) => LuaValue::Integer(n),
        Reply::Bulk(None) => LuaValue::Boolean(false),
        Reply::Bulk(Some(bytes)) => LuaValue::String(lua.create_string(&bytes)?),
        Reply::Status(s) => {
            let t = lua.create_table()?;
            t.set("ok", s)?;
            LuaValue::Table(t)
        }
        Reply::Error(e) => {
            let t = lua.create_table()?;
            t.set("err", e)?;
            LuaValue::Table(t)
        }
        Reply::Array(items) => {
            let t = lua.create_table()?;
            for (i, item) in items.into_iter().enumerate() {
                t.set(i + 1, to_lua(lua, item)?)?;
            }
            LuaValue::Table(t)
        }
    })
}

fn from_lua(value: LuaValue) -> Reply {
    match value {
        LuaValue::Nil | LuaValue::Boolean(false) => Reply::Bulk(None),
        LuaValue::Boolean(true) => Reply::Int(1),
        LuaValue::Integer(n) => Reply::Int(n),
        // Redis truncates Lua numbers to integers.
        LuaValue::Number(n) => Reply::Int(n as i64),
        LuaValue::String(s) => Reply::Bulk(Some(s.as_bytes().to_vec())),
        LuaValue::Table(t) => table_reply(t),
        _ => Reply::Bulk(None),
    }
}

fn table_reply(t: Table) -> Reply {
    if let Ok(LuaValue::String(e)) = t.get::<LuaValue>("err") {
        return Reply::Error(e.to_string_lossy());
    }
    if let Ok(LuaValue::String(ok)) = t.get::<LuaValue>("ok") {
        return Reply::Status(ok.to_string_lossy());
    }
    // An array stops at its first nil, as in Redis.
    let mut items = Vec::new();
    for i in 1.. {
        match t.raw_get::<LuaValue>(i) {
            Ok(LuaValue::Nil) | Err(_) => break,
            Ok(v) => items.push(from_lua(v)),
        }
    }
    Reply::Array(items)
}

fn command_args(args: MultiValue) -> Result<Vec<Vec<u8>>, String> {
    args.into_iter()
        .map(|v| match v {
            LuaValue::String(s) => Ok(s.as_bytes().to_vec()),
            LuaValue::Integer(n) => Ok(n.to_string().into_bytes()),
            LuaValue::Number(n) => {
                Ok(if n.fract() == 0.0 && n.abs() < 1e17 { format!("{}", n as i64) } else { format!("{n}") }
                    .into_bytes())
            }
            _ => Err("ERR Lua redis lib command arguments must be strings or integers".to_owned()),
        })
        .collect()
}

/// A command a script ran with `redis.call` failed: the script ends with the command's error.
#[derive(Debug)]
struct CallFailed(String);

impl std::fmt::Display for CallFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for CallFailed {}

/// Redis's error handler for a script, run where the error was raised: the error's message
/// (`ERR ` before a Lua error's text, a `{err = ...}` table's own text, a failed
/// `redis.call`'s reply) and the script line that raised it (the raising function's, or its
/// caller's when that is a C function such as `error` or `redis.call`).
fn error_handler(lua: &Lua) -> mlua::Result<Function> {
    lua.create_function(|lua, error: LuaValue| {
        // Level 0 is this handler, level 1 what raised the error. (This holds while mlua keeps
        // Lua's own `xpcall`, as it does by default; with `catch_rust_panics` off it would put
        // a message handler of its own in between and every line would shift.)
        let frame = |level| lua.inspect_stack(level, |d| (d.source().what == "C", d.current_line()));
        let line = match frame(1) {
            Some((true, _)) => frame(2).and_then(|(_, line)| line),
            Some((false, line)) => line,
            None => None,
        };
        let message = match error {
            LuaValue::Table(t) => t.get::<Option<String>>("err")?.unwrap_or_else(|| "ERR unknown error".to_owned()),
            LuaValue::String(s) => format!("ERR {}", s.to_string_lossy()),
            LuaValue::Error(e) => match e.chain().find_map(|e| e.downcast_ref::<CallFailed>()) {
                Some(CallFailed(message)) => message.clone(),
                None => format!("ERR {}", first_line(&e)),
            },
            other => format!("ERR {}", lua.globals().get::<Function>("tostring")?.call::<String>(other)?),
        };
        let failure = lua.create_table()?;
        failure.set("err", message)?;
        failure.set("line", line)?;
        Ok(failure)
    })
}

/// What a script call works on; lent to the Lua state for the call's duration.
struct CallCtx {
    keyspace: Keyspace,
    now: Duration,
    time: (u64, u64),
}

fn dispatch(lua: &Lua, args: MultiValue) -> Reply {
    let args = match command_args(args) {
        Ok(args) => args,
        Err(e) => return Reply::Error(e),
    };
    let Some(name) = args.first().map(|n| String::from_utf8_lossy(n).to_ascii_uppercase()) else {
        return Reply::err("ERR Please specify at least one argument for this redis lib call");
    };
    if FORBIDDEN.contains(&name.as_str()) {
        return Reply::err("ERR This Redis command is not allowed from script");
    }
    let Some(mut ctx) = lua.app_data_mut::<CallCtx>() else {
        return Reply::err("ERR redis.call outside a script");
    };
    // Inside a script Redis words its refusals before a command runs its own way (a command's
    // own refusals, such as HSET's field without a value, keep their words).
    match super::data::declared(&name, args.len()) {
        Err(Refusal::Unknown) => Reply::err("ERR Unknown Redis command called from script"),
        Err(Refusal::Arity) => Reply::err("ERR Wrong number of args calling Redis command from script"),
        Ok(()) => {
            let (now, time) = (ctx.now, ctx.time);
            ctx.keyspace.execute(&args, now, time)
        }
    }
}

/// One Lua VM for the host, as Redis has, with each script compiled once (until a restart
/// flushes the script cache).
pub struct ScriptEngine {
    lua: Lua,
    compiled: BTreeMap<String, Function>,
    /// Lua's `xpcall`, and [`error_handler`] for it.
    xpcall: Function,
    on_error: Function,
}

impl Default for ScriptEngine {
    fn default() -> Self {
        ScriptEngine::new().expect("the Lua VM starts")
    }
}

impl ScriptEngine {
    pub fn new() -> mlua::Result<ScriptEngine> {
        let lua = Lua::new();
        let redis = lua.create_table()?;
        redis.set(
            "call",
            lua.create_function(|lua, args: MultiValue| match dispatch(lua, args) {
                Reply::Error(message) => Err(mlua::Error::external(CallFailed(message))),
                reply => to_lua(lua, reply),
            })?,
        )?;
        redis.set("pcall", lua.create_function(|lua, args: MultiValue| to_lua(lua, dispatch(lua, args)))?)?;
        redis.set("status_reply", lua.create_function(|lua, s: String| to_lua(lua, Reply::Status(s)))?)?;
        redis.set("error_reply", lua.create_function(|lua, s: String| to_lua(lua, Reply::Error(s)))?)?;
        lua.globals().set("redis", redis)?;
        let (xpcall, on_error) = (lua.globals().get("xpcall")?, error_handler(&lua)?);
        Ok(ScriptEngine { lua, compiled: BTreeMap::new(), xpcall, on_error })
    }

    /// Runs the script `source` (known by `sha`) with `keys` and `args` against `keyspace` at
    /// simulated time `now` (and Redis `TIME` = `time`): EVAL's arguments, and the moment.
    #[allow(clippy::too_many_arguments)]
    pub fn run(
        &mut self,
        keyspace: &mut Keyspace,
        now: Duration,
        time: (u64, u64),
        sha: &str,
        source: &str,
        keys: &[Vec<u8>],
        args: &[Vec<u8>],
    ) -> Reply {
        let function = match self.compiled.get(sha) {
            Some(f) => f.clone(),
            // Named as Redis names a script, so Lua's messages say `user_script:<line>`.
            None => match self.lua.load(source).set_name("@user_script").into_function() {
                Ok(f) => {
                    self.compiled.insert(sha.to_owned(), f.clone());
                    f
                }
                Err(e) => {
                    let message = match &e {
                        mlua::Error::SyntaxError { message, .. } => message.clone(),
                        other => other.to_string(),
                    };
                    let first = message.lines().next().unwrap_or_default();
                    return Reply::Error(format!("ERR Error compiling script (new function): {first}"));
                }
            },
        };
        self.lua.set_app_data(CallCtx { keyspace: std::mem::take(keyspace), now, time });
        let result = self
            .bind(keys, args)
            .and_then(|()| self.xpcall.call::<(bool, LuaValue)>((function, self.on_error.clone())));
        if let Some(ctx) = self.lua.remove_app_data::<CallCtx>() {
            *keyspace = ctx.keyspace;
        }
        match result {
            Ok((true, value)) => from_lua(value),
            // As Redis 7: the error, then the script and the line that raised it.
            Ok((false, LuaValue::Table(failure))) => {
                let message: String = failure.get("err").unwrap_or_default();
                match failure.get::<Option<usize>>("line").ok().flatten() {
                    Some(line) => Reply::Error(format!("{message} script: {sha}, on @user_script:{line}.")),
                    None => Reply::Error(message),
                }
            }
            Ok((false, other)) => Reply::Error(format!("ERR Error running script: {other:?}")),
            Err(e) => Reply::Error(format!("ERR Error running script: {}", first_line(&e))),
        }
    }

    fn bind(&self, keys: &[Vec<u8>], args: &[Vec<u8>]) -> mlua::Result<()> {
        let strings = |items: &[Vec<u8>]| -> mlua::Result<Table> {
            let t = self.lua.create_table()?;
            for (i, item) in items.iter().enumerate() {
                t.set(i + 1, self.lua.create_string(item)?)?;
            }
            Ok(t)
        };
        self.lua.globals().set("KEYS", strings(keys)?)?;
        self.lua.globals().set("ARGV", strings(args)?)
    }
}

fn first_line(e: &mlua::Error) -> String {
    let message = match e {
        mlua::Error::CallbackError { cause, .. } => cause.to_string(),
        other => other.to_string(),
    };
    message.lines().next().unwrap_or_default().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eval(ks: &mut Keyspace, source: &str, keys: &[&str], args: &[&str]) -> Reply {
        let b = |v: &[&str]| v.iter().map(|s| s.as_bytes().to_vec()).collect::<Vec<_>>();
        let mut engine = ScriptEngine::new().unwrap();
        engine.run(ks, Duration::ZERO, (1_700_000_000, 250_000), source, source, &b(keys), &b(args))
    }

    #[test]
    fn follows_redis_conversion_rules() {
        let mut ks = Keyspace::default();
        assert_eq!(
            eval(&mut ks, "return {1, 'two', false, 3.9}", &[], &[]),
            Reply::Array(vec![Reply::Int(1), Reply::Bulk(Some(b"two".to_vec())), Reply::Bulk(None), Reply::Int(3)])
        );
        assert_eq!(eval(&mut ks, "return {1, nil, 3}", &[], &[]), Reply::Array(vec![Reply::Int(1)]));
        assert_eq!(eval(&mut ks, "return redis.call('SET', KEYS[1], ARGV[1])", &["k"], &["v"]), Reply::ok());
        assert_eq!(eval(&mut ks, "return redis.call('GET', KEYS[1])", &["k"], &[]), Reply::Bulk(Some(b"v".to_vec())));
        assert_eq!(eval(&mut ks, "return redis.call('GET', 'missing') == false", &[], &[]), Reply::Int(1));
        let t =
            eval(&mut ks, "local t = redis.call('TIME'); return tonumber(t[1]) * 1000000 + tonumber(t[2])", &[], &[]);
        assert_eq!(t, Reply::Int(1_700_000_000_250_000));
    }

    #[test]
    fn call_aborts_and_pcall_returns_the_error() {
        let mut ks = Keyspace::default();
        eval(&mut ks, "redis.call('HSET', 'h', 'f', 'v')", &[], &[]);
        assert!(
            matches!(eval(&mut ks, "return redis.call('GET', 'h')", &[], &[]), Reply::Error(e) if e.contains("WRONGTYPE"))
        );
        assert_eq!(
            eval(&mut ks, "local r = redis.pcall('GET', 'h'); return type(r.err)", &[], &[]),
            Reply::Bulk(Some(b"string".to_vec()))
        );
        assert!(matches!(eval(&mut ks, "return redis.call('EVAL', 'return 1', 0)", &[], &[]), Reply::Error(_)));
        assert_eq!(eval(&mut ks, "return redis.status_reply('FINE')", &[], &[]), Reply::Status("FINE".into()));
    }
}
