/**
 * Every parser against thousands of mutated captured frames and random bytes: each returns a
 * value or a WireError, none throws.
 */
import { assert, AssertionError } from "../assert.ts";
import { fixtureNames, loadFixture } from "../fixtures/fixtures.ts";
import { mutate, Prng } from "../fixtures/mutate.ts";
import {
  ETHERNET_HEADER_LEN,
  IPV4_HEADER_LEN,
  IPV6_HEADER_LEN,
  parseArp,
  parseDhcpv4,
  parseDhcpv6,
  parseEthernet,
  parseIcmpv4,
  parseIcmpv6,
  parseIpv4Packet,
  parseIpv6Packet,
  parseUdp,
  UDP_HEADER_LEN,
  WireError,
} from "../../wire/mod.ts";

const ITERATIONS = 20_000;

/** Every parser, at every plausible offset of `frame`. Returns how many results were errors. */
function parseEverything(frame: Uint8Array, rng: Prng): number {
  const src4 = rng.bytes(4);
  const dst4 = rng.bytes(4);
  const src6 = rng.bytes(16);
  const dst6 = rng.bytes(16);
  const l3 = frame.subarray(Math.min(ETHERNET_HEADER_LEN, frame.length));
  const l4v4 = l3.subarray(Math.min(IPV4_HEADER_LEN, l3.length));
  const l4v6 = l3.subarray(Math.min(IPV6_HEADER_LEN, l3.length));
  const results: unknown[] = [
    parseEthernet(frame),
    parseArp(l3),
    parseIpv4Packet(l3),
    parseIpv6Packet(l3),
    parseIcmpv4(l4v4),
    parseIcmpv6(l4v6, src6, dst6),
    parseUdp(l4v4, src4, dst4),
    parseUdp(l4v6, src6, dst6),
    parseDhcpv4(l4v4.subarray(Math.min(UDP_HEADER_LEN, l4v4.length))),
    parseDhcpv6(l4v6.subarray(Math.min(UDP_HEADER_LEN, l4v6.length))),
  ];
  return results.filter((r) => r instanceof WireError).length;
}

Deno.test(`robustness: ${ITERATIONS} mutated and random frames through every parser, nothing throws`, () => {
  const rng = new Prng(0x5eed1234);
  const frames = fixtureNames().map(loadFixture);
  let errors = 0;
  for (let i = 0; i < ITERATIONS; i++) {
    const frame = i % 10 === 9
      ? rng.bytes(rng.below(400))
      : mutate(rng, frames[rng.below(frames.length)], false);
    try {
      errors += parseEverything(frame, rng);
    } catch (e) {
      throw new AssertionError(`iteration ${i}: a parser threw ${e}`);
    }
  }
  // Most mutations must be caught by some layer: the checks are actually exercised.
  assert(errors > ITERATIONS, `only ${errors} errors over ${ITERATIONS} frames`);
});

Deno.test("robustness: every truncation of every fixture is rejected by the layer it cuts", () => {
  for (const name of fixtureNames()) {
    const frame = loadFixture(name);
    for (let len = 0; len < ETHERNET_HEADER_LEN; len++) {
      assert(parseEthernet(frame.subarray(0, len)) instanceof WireError, `${name} at ${len}`);
    }
    const l3 = frame.subarray(ETHERNET_HEADER_LEN);
    const isV4 = frame[12] === 0x08 && frame[13] === 0x00;
    const isV6 = frame[12] === 0x86 && frame[13] === 0xdd;
    for (let len = 0; len < l3.length; len++) {
      const cut = l3.subarray(0, len);
      if (isV4) assert(parseIpv4Packet(cut) instanceof WireError, `${name} cut at ${len}`);
      if (isV6) assert(parseIpv6Packet(cut) instanceof WireError, `${name} cut at ${len}`);
    }
  }
});
