//! Key placement: with several servers, every key must go to the server the
//! original library chose (tests/vectors/key-placement.json: 6099
//! placements). Servers are added for real through the C API, in the
//! recorded adding order, on the recorded addresses and ports.

mod libnmdb_common;

use std::net::{SocketAddrV4, TcpListener};

use libnmdb_common::*;
use nmdb::server::{Endpoint, Transport};
use serde_json::Value;

fn endpoint(s: &Value) -> Endpoint {
    let transport = match s["type"].as_str().unwrap() {
        "tcp" => Transport::Tcp,
        "udp" => Transport::Udp,
        other => panic!("unexpected transport {other}"),
    };
    let addr: SocketAddrV4 = format!("{}:{}", s["addr"].as_str().unwrap(), s["port"])
        .parse()
        .unwrap();
    Endpoint::Inet {
        transport,
        addr: addr.into(),
    }
}

#[test]
fn every_recorded_key_goes_to_the_same_server_as_with_the_original() {
    let path = repo_path("tests/vectors/key-placement.json");
    let v: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    let mut checked = 0;
    for config in v["configs"].as_array().unwrap() {
        let name = config["name"].as_str().unwrap();
        let db = Db::new();
        // TCP servers must accept the connection made when they are added;
        // the listeners' backlog does that without an accept loop.
        let mut listeners = Vec::new();
        for s in config["servers_in_add_order"].as_array().unwrap() {
            let (addr, port) = (
                s["addr"].as_str().unwrap(),
                s["port"].as_i64().unwrap() as i32,
            );
            let added = match s["type"].as_str().unwrap() {
                "tcp" => {
                    let l = TcpListener::bind((addr, port as u16))
                        .unwrap_or_else(|e| panic!("{name}: bind {addr}:{port}: {e}"));
                    listeners.push(l);
                    db.add_tcp(addr, port)
                }
                _ => db.add_udp(addr, port),
            };
            assert_eq!(added, 1, "{name}: add {s}");
        }
        let order: Vec<Endpoint> = config["library_internal_order"]
            .as_array()
            .unwrap()
            .iter()
            .map(endpoint)
            .collect();
        assert_eq!(db.handle().endpoints(), order, "{name}: server order");
        for p in config["placements"].as_array().unwrap() {
            let key = hex(p["key_hex"].as_str().unwrap());
            let server = db.handle().server_for(&key).unwrap();
            assert_eq!(
                server.endpoint,
                endpoint(&p["server"]),
                "{name}: key {}",
                p["key_hex"]
            );
            let index = order.iter().position(|e| *e == server.endpoint).unwrap();
            assert_eq!(index as u64, p["index_in_library_order"].as_u64().unwrap());
            checked += 1;
        }
    }
    assert_eq!(checked, 6099);
}
