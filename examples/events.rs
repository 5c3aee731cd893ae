//! Components talking over channels: a tiny order pipeline on the event bus.
//!
//! * `Shop` registers as a component on channel "shop" and answers `Order` events.
//! * `Audit` listens on the wildcard channel and sees every `Order`, with a higher priority, so it
//!   runs first.
//! * `Warehouse` (a child of the shop in the component tree) answers on "warehouse"; the shop's
//!   handler fires at it and awaits the answer, so the shop's answer is a chain of fires.
//! * Derived events: the fire asks for `Complete<Order>`, which arrives once everything is done.
//!
//! Run it with `cargo run --release --example events`.

use std::time::Duration;

use actix::prelude::*;
use circuits::{Bus, Complete, Component, Derived, Registered, Stop, Subscribe};

/// An order for `qty` items of `item`.
#[derive(Debug, Clone, Message)]
#[rtype(result = "Result<String, String>")]
struct Order {
    item: String,
    qty: u32,
}

/// Asks the warehouse whether it holds `qty` of `item`.
#[derive(Debug, Clone, Message)]
#[rtype(result = "bool")]
struct Reserve {
    item: String,
    qty: u32,
}

struct Shop {
    bus: Bus,
}

impl Actor for Shop {
    type Context = Context<Self>;
}

impl Handler<Order> for Shop {
    type Result = ResponseFuture<Result<String, String>>;

    fn handle(&mut self, order: Order, _: &mut Context<Self>) -> Self::Result {
        let reserve = self.bus.fire(
            "warehouse",
            Reserve {
                item: order.item.clone(),
                qty: order.qty,
            },
        );
        Box::pin(async move {
            let answers = reserve.await.map_err(|e| e.to_string())?;
            if answers.first() == Some(&true) {
                Ok(format!("shipped {} x {}", order.qty, order.item))
            } else {
                Err(format!("out of {}", order.item))
            }
        })
    }
}

impl Handler<Complete<Order>> for Shop {
    type Result = ();
    fn handle(&mut self, done: Complete<Order>, _: &mut Context<Self>) {
        println!(
            "shop: order for {} complete ({} handlers, {} failed)",
            done.event.item, done.handlers, done.failures
        );
    }
}

impl Handler<Stop> for Shop {
    type Result = ();
    fn handle(&mut self, _: Stop, ctx: &mut Context<Self>) {
        println!("shop: stopping");
        ctx.stop();
    }
}

struct Warehouse {
    stock: u32,
}

impl Actor for Warehouse {
    type Context = Context<Self>;
}

impl Handler<Reserve> for Warehouse {
    type Result = bool;
    fn handle(&mut self, r: Reserve, _: &mut Context<Self>) -> bool {
        let ok = r.qty <= self.stock;
        if ok {
            self.stock -= r.qty;
        }
        println!(
            "warehouse: reserve {} x {} -> {ok} (stock now {})",
            r.qty, r.item, self.stock
        );
        ok
    }
}

impl Handler<Stop> for Warehouse {
    type Result = ();
    fn handle(&mut self, _: Stop, ctx: &mut Context<Self>) {
        println!("warehouse: stopping");
        ctx.stop();
    }
}

struct Audit;

impl Actor for Audit {
    type Context = Context<Self>;
}

impl Handler<Order> for Audit {
    type Result = Result<String, String>;
    fn handle(&mut self, o: Order, _: &mut Context<Self>) -> Self::Result {
        println!("audit: saw an order for {} x {}", o.qty, o.item);
        Ok("audited".into())
    }
}

impl Handler<Registered> for Audit {
    type Result = ();
    fn handle(&mut self, r: Registered, _: &mut Context<Self>) {
        println!(
            "audit: {} registered on {:?}",
            r.0.name,
            r.0.channel.as_str()
        );
    }
}

#[actix::main]
async fn main() -> Result<(), circuits::Error> {
    let bus = Bus::new();
    let audit = Audit.start();
    bus.subscribe_with(
        "*",
        audit.clone().recipient::<Order>(),
        Subscribe::new().priority(10),
    )?;
    bus.subscribe("*", audit.recipient::<Registered>())?;

    let shop = Shop { bus: bus.clone() }.start();
    let warehouse = Warehouse { stock: 5 }.start();
    let shop_id = bus.register(
        Component::new("shop")
            .channel("shop")
            .stopper(shop.clone().recipient()),
    )?;
    let warehouse_id = bus.register(
        Component::new("warehouse")
            .channel("warehouse")
            .parent(shop_id)
            .stopper(warehouse.clone().recipient()),
    )?;
    let owned = |id| Subscribe::new().component(id);
    bus.subscribe_with("shop", shop.clone().recipient::<Order>(), owned(shop_id))?;
    bus.subscribe_with("shop", shop.recipient::<Complete<Order>>(), owned(shop_id))?;
    bus.subscribe_with(
        "warehouse",
        warehouse.recipient::<Reserve>(),
        owned(warehouse_id),
    )?;

    for (item, qty) in [("widget", 3), ("widget", 3), ("gadget", 1)] {
        let order = Order {
            item: item.into(),
            qty,
        };
        // The outer `?` is the wait's (did the answers come within 5 s?), the inner the fire's.
        let answers = bus
            .fire_with("shop", order, Derived::none().complete())
            .wait(Duration::from_secs(5))
            .await??;
        println!("answers (audit first, by priority): {answers:?}\n");
    }

    // Stop the shop's subtree: the warehouse (child) stops first, then the shop.
    let stopped = bus
        .stop_component(shop_id)
        .wait(Duration::from_secs(5))
        .await??;
    println!(
        "stopped {} components; {} left registered",
        stopped.len(),
        bus.components().len()
    );
    Ok(())
}
