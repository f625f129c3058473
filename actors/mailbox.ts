/**
 * The messages that cross a Worker boundary for every actor, whatever its own message type.
 *
 * An actor's own messages are a discriminated union declared next to the actor; they travel
 * inside {@link ToActor} `cast`/`call` envelopes. Calls carry a correlation id and are answered
 * by exactly one `reply`.
 * @module
 */

import type { LogFormat, LogLevel } from "../daemon/log.ts";

/** Every actor message has a `type` tag. */
export interface ActorMessage {
  type: string;
}

/** From the supervisor (main thread) to the actor's Worker. */
export type ToActor<M extends ActorMessage = ActorMessage> =
  | {
    kind: "init";
    name: string;
    args: unknown;
    log: { level: LogLevel; format: LogFormat };
  }
  | { kind: "cast"; msg: M }
  | { kind: "call"; id: number; msg: M }
  | { kind: "stop" };

/** From the actor's Worker back to the main thread. */
export type FromActor =
  | { kind: "ready" }
  | { kind: "init_failed"; error: string }
  | { kind: "reply"; id: number; ok: true; value: unknown }
  | { kind: "reply"; id: number; ok: false; error: string }
  | { kind: "event"; event: unknown }
  | { kind: "crashed"; error: string }
  | { kind: "stopped" };
