/**
 * Worker of tests/ffi/binding_test.ts: binds the vNIC loop's fast calls in a fresh isolate, as a
 * vNIC Worker does, and reports which of the shim's functions that bound.
 */
import { bindFastCalls, native } from "../../ffi/binding.ts";

const bound = (): string[] =>
  Object.entries(Object.getOwnPropertyDescriptors(native()))
    .filter(([, d]) => d.get === undefined)
    .map(([name]) => name)
    .sort();

const before = bound();
bindFastCalls("vnic");
const afterBind = bound();
// A function off the hot path, bound on its first use.
const exists = native().mvn_dev_exists(0x7fff_ffff);
// Checked as a main module too (`deno check` of the tree), where `self` has no postMessage.
const scope = globalThis as unknown as { postMessage(msg: unknown): void };
scope.postMessage({ before, afterBind, afterCall: bound(), exists });
