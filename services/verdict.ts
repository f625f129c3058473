/**
 * Small constructors for verdicts, so that handlers read as decisions.
 * @module
 */

import { WireError } from "../wire/mod.ts";
import type { Verdict } from "./context.ts";
import type { DropReason } from "./counters.ts";

/** The frame is not for the gateway. */
export const ROUTE: Verdict = { kind: "route" };

/** Drop with `reason`. */
export function drop(reason: DropReason): Verdict {
  return { kind: "drop", reason };
}

/** Reply with the given frames; a frame that failed to emit turns the verdict into a drop. */
export function reply(...frames: (Uint8Array | WireError)[]): Verdict {
  const out: Uint8Array[] = [];
  for (const f of frames) {
    if (f instanceof WireError) return drop("reply_too_large");
    out.push(f);
  }
  return { kind: "reply", frames: out };
}
