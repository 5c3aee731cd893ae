//! B1-B2: the bus alone. B1: fires per second on one channel, from 1 and from 8 threads, with
//! 0, 1 and 10,000 subscriptions of the same event type on other channels beside it (a fire's
//! cost must not depend on them). B2: the cost of removing subscriptions and components one by
//! one from a bus that holds 10,000 or 40,000 of them (each removal must cost what it touches).
//!
//! B3: fires per second with a catch-all (`AnyEvent`) subscriber on another channel, and on the
//! fire's own channel (each fire then also goes to it), against none.
//!
//! Our bus against itself: the contenders are the sizes, and the verdict compares the crowded
//! bus with the empty one.

use std::sync::mpsc;
use std::thread;

use actix::prelude::*;
use circuits::{AnyEvent, Bus, Component, Subscribe};

use crate::measure::{time, Config, Kind, Scenario};

#[derive(Clone, Message)]
#[rtype(result = "()")]
struct Ping;

struct Sink;
impl Actor for Sink {
    type Context = Context<Self>;
}
impl Handler<Ping> for Sink {
    type Result = ();
    fn handle(&mut self, _: Ping, _: &mut Context<Self>) {}
}
impl Handler<AnyEvent> for Sink {
    type Result = ();
    fn handle(&mut self, _: AnyEvent, _: &mut Context<Self>) {}
}

/// An actix System on its own thread with one `Sink` actor; stopped when dropped.
struct Actors {
    sink: Addr<Sink>,
    system: System,
    thread: Option<thread::JoinHandle<()>>,
}

impl Actors {
    fn start() -> Actors {
        let (tx, rx) = mpsc::channel();
        let thread = thread::spawn(move || {
            let system = System::new();
            system.block_on(async {
                tx.send((Sink.start(), System::current())).unwrap();
            });
            system.run().unwrap();
        });
        let (sink, system) = rx.recv().unwrap();
        Actors {
            sink,
            system,
            thread: Some(thread),
        }
    }
}

impl Drop for Actors {
    fn drop(&mut self) {
        self.system.stop();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Fires `n` events at "target" from `threads` threads (each keeps its fires in flight and waits
/// for them at the end); returns fires per second.
fn fire_rate(bus: &Bus, n: usize, threads: usize) -> f64 {
    let (secs, ()) = time(|| {
        thread::scope(|s| {
            for _ in 0..threads {
                s.spawn(|| {
                    let values: Vec<_> =
                        (0..n / threads).map(|_| bus.fire("target", Ping)).collect();
                    for mut v in values {
                        v.wait_blocking(std::time::Duration::from_secs(60))
                            .expect("in time")
                            .expect("delivered");
                    }
                });
            }
        });
    });
    (n / threads * threads) as f64 / secs
}

pub fn b1(cfg: &Config) -> Vec<Scenario> {
    let n = cfg.size(100_000, 20_000);
    let actors = Actors::start();
    let mut out = Vec::new();
    for threads in [1, 8] {
        let mut s = Scenario::new(
            &format!("B1-{threads}"),
            &format!("bus: {n} fires at one channel from {threads} thread(s), beside unrelated subscriptions"),
            "fires/s",
            true,
            "10,000 unrelated subscriptions cost under 10% of the fire rate",
        );
        let sizes = [0usize, 1, 10_000];
        let name = |k: usize| format!("{k} unrelated subscriptions");
        for k in sizes {
            s.add(&name(k), Kind::Ours);
        }
        let buses: Vec<Bus> = sizes
            .iter()
            .map(|&k| {
                let bus = Bus::new();
                bus.subscribe("target", actors.sink.clone().recipient::<Ping>())
                    .unwrap();
                for i in 0..k {
                    bus.subscribe(
                        format!("other-{i}"),
                        actors.sink.clone().recipient::<Ping>(),
                    )
                    .unwrap();
                }
                bus
            })
            .collect();
        for _ in 0..cfg.rounds {
            for (bus, &k) in buses.iter().zip(&sizes) {
                s.push(&name(k), fire_rate(bus, n, threads));
            }
        }
        let ratio = s.median_of(&name(10_000)) / s.median_of(&name(0));
        s.judge(
            ratio > 0.9,
            format!("with 10,000 unrelated subscriptions: {ratio:.2}x the rate of an empty bus"),
        );
        out.push(s);
    }
    out
}

pub fn b2(cfg: &Config) -> Vec<Scenario> {
    let actors = Actors::start();
    let sizes = [10_000usize, 40_000];
    let mut subs = Scenario::new(
        "B2-unsubscribe",
        "bus: unsubscribe every subscription one by one, from a bus holding N",
        "us per removal",
        false,
        "the cost per removal does not grow with N (40k within 1.5x of 10k)",
    );
    let mut comps = Scenario::new(
        "B2-unregister",
        "bus: unregister every component (children of one parent, each with one subscription) one by one, from a bus holding N",
        "us per removal",
        false,
        "the cost per removal does not grow with N (40k within 1.5x of 10k)",
    );
    let name = |n: usize| format!("N = {n}");
    for n in sizes {
        subs.add(&name(n), Kind::Ours);
        comps.add(&name(n), Kind::Ours);
    }
    for _ in 0..cfg.rounds {
        for n in sizes {
            let bus = Bus::new();
            let ids: Vec<_> = (0..n)
                .map(|i| {
                    bus.subscribe(format!("c-{i}"), actors.sink.clone().recipient::<Ping>())
                        .unwrap()
                })
                .collect();
            let (secs, ()) = time(|| {
                for id in ids {
                    assert!(bus.unsubscribe(id));
                }
            });
            subs.push(&name(n), secs * 1e6 / n as f64);

            let bus = Bus::new();
            let ids: Vec<_> = (0..n)
                .map(|i| {
                    let id = bus.register(Component::new(format!("c-{i}"))).unwrap();
                    bus.subscribe_with(
                        format!("c-{i}"),
                        actors.sink.clone().recipient::<Ping>(),
                        Subscribe::new().component(id),
                    )
                    .unwrap();
                    id
                })
                .collect();
            let (secs, ()) = time(|| {
                for id in ids {
                    bus.unregister(id).unwrap();
                }
            });
            comps.push(&name(n), secs * 1e6 / n as f64);
        }
    }
    for s in [&mut subs, &mut comps] {
        let growth = s.median_of(&name(40_000)) / s.median_of(&name(10_000));
        s.judge(
            growth < 1.5,
            format!("40,000 cost {growth:.2}x per removal what 10,000 cost"),
        );
    }
    vec![subs, comps]
}

pub fn b3(cfg: &Config) -> Vec<Scenario> {
    let n = cfg.size(100_000, 20_000);
    let actors = Actors::start();
    let mut s = Scenario::new(
        "B3",
        &format!(
            "bus: {n} fires at one channel from 1 thread, with a catch-all subscriber or none"
        ),
        "fires/s",
        true,
        "a catch-all subscriber on another channel costs under 10% of the fire rate",
    );
    let variants = [
        "no catch-all subscriber",
        "a catch-all subscriber on another channel",
        "a catch-all subscriber on the fire's channel",
    ];
    for v in variants {
        s.add(v, Kind::Ours);
    }
    let buses: Vec<Bus> = (0..3)
        .map(|i| {
            let bus = Bus::new();
            bus.subscribe("target", actors.sink.clone().recipient::<Ping>())
                .unwrap();
            let channel = if i == 1 { "elsewhere" } else { "target" };
            if i > 0 {
                bus.subscribe(channel, actors.sink.clone().recipient::<AnyEvent>())
                    .unwrap();
            }
            bus
        })
        .collect();
    for _ in 0..cfg.rounds {
        for (bus, v) in buses.iter().zip(variants) {
            s.push(v, fire_rate(bus, n, 1));
        }
    }
    let elsewhere = s.median_of(variants[1]) / s.median_of(variants[0]);
    let here = s.median_of(variants[2]) / s.median_of(variants[0]);
    s.judge(
        elsewhere > 0.9,
        format!(
            "a catch-all elsewhere: {elsewhere:.2}x the rate without; on the fire's channel (each fire delivered to it too): {here:.2}x"
        ),
    );
    vec![s]
}
