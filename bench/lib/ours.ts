/**
 * "Ours": the mvirt-net backend for two vNICs of one network. Not written yet (our
 * vhost-user backend is being built under vhost/, ffi/, actors/); until then the harness
 * measures the reference alone. To plug it in, return a {@link Backend} whose `start()`
 * creates one network with two vNICs (guest A and B, a /32 and a /128 each), pins the
 * data-plane thread that polls them to `params.cpu`, and resolves with the two vhost-user
 * socket paths, the network's gateway MAC and the guests' MACs and addresses once both
 * sockets accept connections; `stop()` removes everything by PID.
 * @module
 */

import type { Backend } from "./backend.ts";
import { TestpmdReference } from "./reference.ts";

/** Backends selectable as "ours" with `--ours NAME`. */
export const OURS: Record<string, () => Backend | string> = {
  /** Our backend; a string is the reason it cannot run. */
  "mvirt-net": () => "our vhost-user backend is not written yet",
  /** The reference measured against itself: the A/A noise check of the setup. */
  "reference": () => new TestpmdReference("dpdk-testpmd (A/A)"),
  "none": () => "not requested (--ours none)",
};
