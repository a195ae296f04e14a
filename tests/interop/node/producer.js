// A producer of orders commands written from docs/wire-protocol.md alone: it sends
// every command type for one order, one invalid command, one command twice, and one
// command under a task id the library picks; it prints one JSON line per answer.
//
//   node producer.js REDIS_URL ORDER_ID
"use strict";
const celery = require("celery-node");
const { randomUUID } = require("crypto");

const [url, orderId] = process.argv.slice(2);
const client = celery.createClient(url, url, "orders.commands");
const TASK = "orders.handle_command";

function envelope(type, payload, extra = {}) {
  return { type, schema: 1, command_id: randomUUID(), payload: { order_id: orderId, ...payload }, ...extra };
}

async function send(label, command, taskId = command.command_id) {
  const outcome = await client.sendTask(TASK, [command], {}, taskId).get(30000);
  console.log(JSON.stringify({ label, command_id: command.command_id, task_id: taskId, outcome }));
  return outcome;
}

async function main() {
  await send("create", envelope("CreateOrder", { customer_id: "customer-node" }));
  await send("add apple", envelope("AddItem", { item_id: "apple", quantity: 3, price: "1.50" }));
  await send("add pear", envelope("AddItem", { item_id: "pear", quantity: 1, price: "2" }));
  await send("remove pear", envelope("RemoveItem", { item_id: "pear" }));
  await send("invalid", envelope("AddItem", { item_id: "plum", quantity: 0, price: "1.00" }));
  const twice = envelope("AddItem", { item_id: "fig", quantity: 2, price: "0.75" });
  await send("twice, first", twice);
  await send("twice, again", twice);
  // The library's own task id: the worker answers under it and under the command id.
  const pay = envelope("PayOrder", { payment_method: "card" });
  await send("pay, library task id", pay, randomUUID());
  await send("cancel after pay", envelope("CancelOrder", { reason: "too late" }));
  await client.disconnect();
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
