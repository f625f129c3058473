/**
 * The network actor: one Worker per network. It owns the network's membership (which vNIC
 * holds which addresses and routed prefixes); routing between vNICs builds on it.
 * @module
 */

import type { DesiredNetwork, DesiredNic } from "../daemon/protocol.ts";
import { computeRoutes, type RouteEntry } from "../routing/routes.ts";
import { type ActorContext, runActor } from "./worker_runtime.ts";

/** Messages the network actor accepts. */
export type NetworkMsg =
  | { type: "NetworkChanged"; network: DesiredNetwork }
  | { type: "NicJoined"; nic: DesiredNic }
  | { type: "NicLeft"; id: string }
  | { type: "GetMembers" }
  | { type: "InjectFault"; reason: string };

/** What the network actor reports: the routes of the network after every change. */
export type NetworkEvent = { type: "RoutesChanged"; routes: RouteEntry[] };

/** Arguments of the network actor's start. */
export interface NetworkArgs {
  network: DesiredNetwork;
  nics: DesiredNic[];
}

/** One member's addresses, as the network actor answers `GetMembers`. */
export interface Member {
  id: string;
  mac: string;
  ipv4: string;
  ipv6: string;
  routedIpv4Prefixes: string[];
  routedIpv6Prefixes: string[];
}

interface NetworkState {
  network: DesiredNetwork;
  members: Map<string, Member>;
  /** A publication of the routes is due (see {@link PUBLISH_DELAY_MS}). */
  publishTimer: ReturnType<typeof setTimeout> | null;
}

/**
 * Membership changes within this time share one computation and publication of the routes: a
 * restore or a burst of creates sends a NicJoined per vNIC, and recomputing (and sending) every
 * route of the network for each cost O(N) per vNIC.
 */
const PUBLISH_DELAY_MS = 5;

function member(nic: DesiredNic): Member {
  return {
    id: nic.id,
    mac: nic.mac,
    ipv4: nic.ipv4,
    ipv6: nic.ipv6,
    routedIpv4Prefixes: nic.routedIpv4Prefixes,
    routedIpv6Prefixes: nic.routedIpv6Prefixes,
  };
}

/** Publishes the routes after {@link PUBLISH_DELAY_MS}, once for all changes meanwhile. */
function schedulePublish(state: NetworkState, ctx: ActorContext): void {
  if (state.publishTimer !== null) return;
  state.publishTimer = setTimeout(() => {
    state.publishTimer = null;
    publishRoutes(state, ctx);
  }, PUBLISH_DELAY_MS);
}

/** Recomputes the routes and publishes them; conflicts are logged, never fatal. */
function publishRoutes(state: NetworkState, ctx: ActorContext): void {
  const { routes, conflicts } = computeRoutes([...state.members.values()]);
  for (const c of conflicts) {
    ctx.log.warn("prefix claimed by two vNICs; the first keeps it", { ...c });
  }
  ctx.emit({ type: "RoutesChanged", routes } satisfies NetworkEvent);
}

if (import.meta.main) {
  runActor<NetworkMsg, NetworkState, NetworkArgs>({
    init(args, ctx) {
      ctx.log.debug("network actor started", { nics: args.nics.length });
      const state: NetworkState = {
        network: args.network,
        members: new Map(args.nics.map((n) => [n.id, member(n)])),
        publishTimer: null,
      };
      publishRoutes(state, ctx);
      return state;
    },
    handle(state, msg, ctx) {
      switch (msg.type) {
        case "NetworkChanged":
          state.network = msg.network;
          return;
        case "NicJoined":
          state.members.set(msg.nic.id, member(msg.nic));
          schedulePublish(state, ctx);
          return;
        case "NicLeft":
          state.members.delete(msg.id);
          schedulePublish(state, ctx);
          return;
        case "GetMembers":
          return [...state.members.values()];
        case "InjectFault":
          faultInjection(ctx.name, msg.reason);
      }
    },
  });
}

/**
 * Throws from outside any handler, as a real bug in a timer would, so that tests can prove the
 * supervisor restarts the actor. Only honoured when fault injection is enabled.
 */
export function faultInjection(actor: string, reason: string): void {
  if (Deno.env.get("MVIRT_NET_FAULT_INJECTION") !== "1") {
    throw new Error(`${actor}: fault injection is disabled (MVIRT_NET_FAULT_INJECTION=1)`);
  }
  setTimeout(() => {
    throw new Error(`injected fault: ${reason}`);
  }, 0);
}
