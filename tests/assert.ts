/**
 * The few assertions the tests need (`@std/assert` lives on JSR, which is unreachable here).
 * @module
 */

import { deepStrictEqual } from "node:assert";

/** Raised by a failed assertion. */
export class AssertionError extends Error {
  override name = "AssertionError";
}

/** Fails unless `cond` is truthy. */
export function assert(cond: unknown, msg = "assertion failed"): asserts cond {
  if (!cond) throw new AssertionError(msg);
}

/** Fails unless `actual` deep-equals `expected`. */
export function assertEquals<T>(actual: T, expected: T, msg?: string): void {
  try {
    deepStrictEqual(actual, expected);
  } catch {
    throw new AssertionError(
      `${msg ? msg + ": " : ""}expected ${show(expected)}, got ${show(actual)}`,
    );
  }
}

/** Fails when `actual` deep-equals `unexpected`. */
export function assertNotEquals<T>(actual: T, unexpected: T, msg?: string): void {
  let equal = true;
  try {
    deepStrictEqual(actual, unexpected);
  } catch {
    equal = false;
  }
  if (equal) throw new AssertionError(`${msg ? msg + ": " : ""}did not expect ${show(actual)}`);
}

/** Fails unless `fn` throws an instance of `cls` whose message includes `includes`. */
export function assertThrows(
  fn: () => unknown,
  cls: new (...args: never[]) => Error = Error,
  includes?: string,
): Error {
  try {
    fn();
  } catch (e) {
    checkError(e, cls, includes);
    return e as Error;
  }
  throw new AssertionError(`expected ${cls.name} to be thrown`);
}

/** Async {@link assertThrows}. */
export async function assertRejects(
  fn: () => Promise<unknown>,
  cls: new (...args: never[]) => Error = Error,
  includes?: string,
): Promise<Error> {
  try {
    await fn();
  } catch (e) {
    checkError(e, cls, includes);
    return e as Error;
  }
  throw new AssertionError(`expected ${cls.name} to be rejected`);
}

function checkError(e: unknown, cls: new (...args: never[]) => Error, includes?: string): void {
  if (!(e instanceof cls)) {
    throw new AssertionError(`expected ${cls.name}, got ${show(e)}`);
  }
  if (includes !== undefined && !e.message.includes(includes)) {
    throw new AssertionError(`expected message to include "${includes}", got "${e.message}"`);
  }
}

function show(v: unknown): string {
  if (v instanceof Error) return `${v.name}: ${v.message}`;
  try {
    return JSON.stringify(v, (_k, x) => typeof x === "bigint" ? `${x}n` : x);
  } catch {
    return String(v);
  }
}
