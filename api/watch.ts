/**
 * Fan-out of change events to Watch streams, in commit order, without ever blocking the API.
 *
 * Each watcher has a bounded queue. Events go straight to the gRPC stream while it accepts
 * them; once the stream signals backpressure they wait in the queue until it drains. A watcher
 * whose queue overflows is too slow to follow: it is cut off with RESOURCE_EXHAUSTED and gets
 * nothing more, so the memory one slow client can hold is bounded by the queue limit plus what
 * grpc-js had already accepted.
 * @module
 */

import type * as grpc from "@grpc/grpc-js";
import { Status } from "./errors.ts";

/** Events a watcher may fall behind by before it is disconnected. */
export const DEFAULT_WATCH_QUEUE_LIMIT = 1024;

/** One subscriber's stream. */
class Watcher<E> {
  #call: grpc.ServerWritableStream<unknown, E>;
  #queue: E[] = [];
  #waitingForDrain = false;
  #limit: number;
  #done = false;
  #onDone: () => void;

  constructor(call: grpc.ServerWritableStream<unknown, E>, limit: number, onDone: () => void) {
    this.#call = call;
    this.#limit = limit;
    this.#onDone = onDone;
    call.on("drain", () => this.#flush());
    call.on("cancelled", () => this.#finish());
    call.on("close", () => this.#finish());
    call.on("error", () => this.#finish());
  }

  push(event: E): void {
    if (this.#done) return;
    if (this.#waitingForDrain) {
      if (this.#queue.length >= this.#limit) {
        this.#disconnect();
        return;
      }
      this.#queue.push(event);
      return;
    }
    if (!this.#call.write(event)) this.#waitingForDrain = true;
  }

  /** Ends the stream with OK (server shutdown). */
  end(): void {
    if (this.#done) return;
    this.#finish();
    this.#call.end();
  }

  #flush(): void {
    this.#waitingForDrain = false;
    while (this.#queue.length > 0 && !this.#done) {
      if (!this.#call.write(this.#queue.shift()!)) {
        this.#waitingForDrain = true;
        return;
      }
    }
  }

  #disconnect(): void {
    this.#queue = [];
    this.#finish();
    // grpc-js turns an 'error' on a server stream into the call's status.
    this.#call.emit("error", {
      code: Status.RESOURCE_EXHAUSTED,
      details: `watcher fell more than ${this.#limit} events behind and was disconnected; ` +
        "reconnect and re-list to resynchronise",
    });
  }

  #finish(): void {
    if (this.#done) return;
    this.#done = true;
    this.#onDone();
  }
}

/** The set of watchers of one kind of event. */
export class WatchHub<E> {
  #watchers = new Set<Watcher<E>>();
  #limit: number;

  constructor(limit: number = DEFAULT_WATCH_QUEUE_LIMIT) {
    this.#limit = limit;
  }

  /** Number of connected watchers. */
  get size(): number {
    return this.#watchers.size;
  }

  /** Adds a stream; it receives every event published from now on. */
  subscribe(call: grpc.ServerWritableStream<unknown, E>): void {
    const w: Watcher<E> = new Watcher(call, this.#limit, () => this.#watchers.delete(w));
    this.#watchers.add(w);
  }

  /** Sends `event` to every watcher; never blocks. */
  publish(event: E): void {
    for (const w of this.#watchers) w.push(event);
  }

  /** Ends every stream (server shutdown). */
  closeAll(): void {
    for (const w of [...this.#watchers]) w.end();
  }
}
