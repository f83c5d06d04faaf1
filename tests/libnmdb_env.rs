//! The NMDB_TIMEOUT_MS environment variable. Alone in its test binary: it
//! changes the process environment.

mod libnmdb_common;

use libnmdb_common::Db;
use nmdb::timeout::{DEFAULT_TIMEOUT_MS, TIMEOUT_ENV};

#[test]
fn environment_sets_the_default_timeout_and_nmdb_set_timeout_overrides_it() {
    std::env::remove_var(TIMEOUT_ENV);
    assert_eq!(Db::new().handle().timeout_ms(), DEFAULT_TIMEOUT_MS);
    std::env::set_var(TIMEOUT_ENV, "1234");
    let db = Db::new();
    assert_eq!(db.handle().timeout_ms(), 1234);
    db.set_timeout(77);
    assert_eq!(db.handle().timeout_ms(), 77);
    std::env::set_var(TIMEOUT_ENV, "soon");
    assert_eq!(Db::new().handle().timeout_ms(), DEFAULT_TIMEOUT_MS);
    std::env::remove_var(TIMEOUT_ENV);
}
