/**
 * The gateway services against thousands of mutated captured guest frames and random bytes:
 * every call returns a verdict, none throws, and every drop is counted exactly once.
 */
import { assert, assertEquals, AssertionError } from "../assert.ts";
import { fixtureNames, loadFixture } from "../fixtures/fixtures.ts";
import { mutate, Prng } from "../fixtures/mutate.ts";
import { DROP_REASONS, DropCounters, handleGuestFrame, type Verdict } from "../../services/mod.ts";
import {
  bytesEqual,
  ETHERTYPE_ARP,
  ETHERTYPE_IPV4,
  ETHERTYPE_IPV6,
  parseEthernet,
  WireError,
} from "../../wire/mod.ts";
import { GUEST_MAC, guestDhcpv4, guestDhcpv6, GW_MAC, testCtx, v6 } from "./helpers.ts";

const ITERATIONS = 20_000;
const ETHERTYPES = [ETHERTYPE_ARP, ETHERTYPE_IPV4, ETHERTYPE_IPV6];

/** A random frame from the guest's MAC with a protocol the services look at. */
function randomGuestFrame(rng: Prng): Uint8Array {
  const f = rng.bytes(14 + rng.below(600));
  f.set(GW_MAC, 0);
  f.set(GUEST_MAC, 6);
  const t = ETHERTYPES[rng.below(ETHERTYPES.length)];
  f[12] = t >> 8;
  f[13] = t & 0xff;
  // Often a plausible version nibble, so the random bytes get past the first check.
  if (t === ETHERTYPE_IPV4 && rng.below(2)) f[14] = 0x45;
  if (t === ETHERTYPE_IPV6 && rng.below(2)) f[14] = 0x60;
  return f;
}

function checkVerdict(v: Verdict, i: number): void {
  if (v.kind === "reply") {
    for (const f of v.frames) {
      const e = parseEthernet(f);
      if (e instanceof WireError || !bytesEqual(e.src, GW_MAC)) {
        throw new AssertionError(`iteration ${i}: a reply frame not from the gateway`);
      }
    }
  } else if (v.kind === "drop") {
    assert((DROP_REASONS as readonly string[]).includes(v.reason), `unknown reason ${v.reason}`);
  } else {
    assertEquals(v.kind, "route");
  }
}

Deno.test(`robustness: ${ITERATIONS} mutated and random guest frames; no throw, every drop counted`, () => {
  const rng = new Prng(0xc0ffee);
  const guestFrames = [
    ...fixtureNames().map(loadFixture).filter((f) => bytesEqual(f.subarray(6, 12), GUEST_MAC)),
    guestDhcpv4({ messageType: 3 }, { ciaddr: new Uint8Array([10, 77, 0, 20]) }),
    guestDhcpv6(5, {
      clientId: new Uint8Array([0, 3, 0, 1, 1, 2, 3, 4, 5, 6]),
      iaNa: [{
        iaid: 1,
        t1: 0,
        t2: 0,
        addresses: [{ addr: v6("fd00:77::18"), preferredLifetime: 0, validLifetime: 0 }],
      }],
    }),
  ];
  assert(guestFrames.length >= 18, `only ${guestFrames.length} guest frames`);
  const counters = new DropCounters();
  // Contexts differ in what they serve, so that mutated frames reach different branches.
  const contexts = [
    testCtx(),
    testCtx({ isPublic: false, dnsServers4: [], dnsServers6: [], ntpServers6: [v6("fd00::123")] }),
  ];
  let drops = 0;
  const kinds = { reply: 0, route: 0, drop: 0 };
  for (let i = 0; i < ITERATIONS; i++) {
    const frame = i % 8 === 7
      ? randomGuestFrame(rng)
      : mutate(rng, guestFrames[rng.below(guestFrames.length)], rng.below(16) !== 0);
    const before = counters.total();
    let v: Verdict;
    try {
      v = handleGuestFrame(contexts[i & 1], frame, counters);
    } catch (e) {
      throw new AssertionError(`iteration ${i}: handleGuestFrame threw ${e}`);
    }
    checkVerdict(v, i);
    kinds[v.kind]++;
    if (v.kind === "drop") drops++;
    assertEquals(counters.total(), before + (v.kind === "drop" ? 1 : 0), `iteration ${i}`);
  }
  assertEquals(counters.total(), drops);
  assertEquals(counters.counts.handler_fault, 0);
  // The mix shows that the mutations reach every outcome.
  assert(
    kinds.reply > 100 && kinds.route > 100 && kinds.drop > ITERATIONS / 2,
    JSON.stringify(kinds),
  );
});
