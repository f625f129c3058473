/**
 * Small helpers for the wire tests: addresses from text, and asserting a WireError's kind.
 * @module
 */

import { AssertionError } from "../assert.ts";
import {
  type Ipv4Addr,
  type Ipv6Addr,
  type MacAddr,
  parseIpv4,
  parseIpv6,
  parseMac,
  WireError,
  type WireErrorKind,
} from "../../wire/mod.ts";

/** IPv4 address from text; throws on a typo in the test itself. */
export function v4(text: string): Ipv4Addr {
  const a = parseIpv4(text);
  if (a instanceof WireError) throw new Error(String(a));
  return a;
}

/** IPv6 address from text. */
export function v6(text: string): Ipv6Addr {
  const a = parseIpv6(text);
  if (a instanceof WireError) throw new Error(String(a));
  return a;
}

/** MAC from text. */
export function mac(text: string): MacAddr {
  const a = parseMac(text);
  if (a instanceof WireError) throw new Error(String(a));
  return a;
}

/** Fails unless `r` is a WireError of `kind` (and of `protocol`, when given). */
export function assertWireError(r: unknown, kind: WireErrorKind, protocol?: string): WireError {
  if (!(r instanceof WireError)) {
    throw new AssertionError(`expected WireError ${kind}, got a value`);
  }
  if (r.kind !== kind || (protocol !== undefined && r.protocol !== protocol)) {
    throw new AssertionError(`expected ${protocol ?? "?"}: ${kind}, got ${r}`);
  }
  return r;
}

/** Fails when `r` is a WireError; returns it narrowed. */
export function ok<T>(r: T | WireError): T {
  if (r instanceof WireError) throw new AssertionError(`unexpected ${r}`);
  return r;
}
