//! Session stores that do not speak the Redis protocol: the stores the seeds ran before
//! sessiond, kept so a migration can read from them and write back to them while sessions
//! move (issue #5).
//!
//! * [`sql`]: a MySQL/MariaDB table, optionally fronted by memcached;
//! * [`files`]: a directory of PHP session files, expiring as PHP's garbage collector does;
//! * [`keymap`]: how a client key (`PHPREDIS_SESSION:<id>`) names a session in such a store.
//!
//! They are stores, not migration logic: each implements the `Store` trait (`src/store/`)
//! for string sessions and refuses other types by name. The migration router (`src/migrate/`)
//! joins any two stores; nothing here knows it exists.

pub mod files;
pub mod keymap;
pub mod sql;
