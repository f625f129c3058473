import { assertEquals } from "../assert.ts";
import { parseIperf, parseRetransmits } from "../../bench/lib/vm.ts";

// The end of `iperf3 -c … -f m` as the test guest's iperf3 prints it.
const ONE = `[ ID] Interval           Transfer     Bitrate         Retr
[  5]   0.00-5.00   sec   860 MBytes  1443 Mbits/sec   12             sender
[  5]   0.00-5.04   sec   858 MBytes  1429 Mbits/sec                  receiver
`;
const FOUR = `[ ID] Interval           Transfer     Bitrate         Retr
[  5]   0.00-5.00   sec   220 MBytes   369 Mbits/sec    3             sender
[  5]   0.00-5.04   sec   219 MBytes   365 Mbits/sec                  receiver
[  7]   0.00-5.00   sec   221 MBytes   371 Mbits/sec    0             sender
[  7]   0.00-5.04   sec   220 MBytes   367 Mbits/sec                  receiver
[SUM]   0.00-5.00   sec   880 MBytes  1477 Mbits/sec   37             sender
[SUM]   0.00-5.04   sec   877 MBytes  1460 Mbits/sec                  receiver
`;

Deno.test("iperf3: the receiver's rate and the sender's retransmissions", () => {
  assertEquals(parseIperf(ONE, 1), 1429);
  assertEquals(parseRetransmits(ONE, 1), 12);
  assertEquals(parseIperf(FOUR, 4), 1460);
  assertEquals(parseRetransmits(FOUR, 4), 37);
});

Deno.test("iperf3: no Retr column (not Linux) gives NaN, not 0", () => {
  const noRetr = ONE.replace(/ {3}12 {13}sender/, "                sender");
  assertEquals(parseRetransmits(noRetr, 1), NaN);
});
