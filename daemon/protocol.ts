/**
 * The internal protocol between the api process and the dataplane process.
 *
 * The api owns the desired state (the SQLite store); the dataplane owns the devices. On every
 * (re)connect the api sends {@link SyncState} with the full desired state and the dataplane
 * converges to it: it creates what is missing, updates what changed and removes what is no
 * longer wanted. Afterwards incremental requests keep both in step, and the dataplane reports
 * vNIC state changes as events.
 *
 * Frames on the Unix socket are `u32 big-endian length` + UTF-8 JSON of one {@link Envelope}.
 * The first frame each way is {@link Hello}; a peer with another major version is refused.
 * @module
 */

/** Bumped on any incompatible change of the messages below. */
export const PROTOCOL_VERSION = 2;
/** Largest frame either side accepts: a full state of thousands of vNICs fits easily. */
export const MAX_FRAME_BYTES = 64 * 1024 * 1024;

/** A network as the dataplane needs it. */
export interface DesiredNetwork {
  id: string;
  name: string;
  /** Normalised CIDR, or "" when IPv4 is disabled. */
  ipv4Subnet: string;
  /** Normalised CIDR, or "" when IPv6 is disabled. */
  ipv6Prefix: string;
  dnsServers: string[];
  ntpServers: string[];
  isPublic: boolean;
  mtu: number;
}

/** A vNIC as the dataplane needs it. */
export interface DesiredNic {
  id: string;
  name: string;
  networkId: string;
  /** "52:54:00:12:34:56" form. */
  mac: string;
  /** Bare address ("10.0.0.5") or "" when the network has no IPv4. */
  ipv4: string;
  /** Bare address or "" when the network has no IPv6. */
  ipv6: string;
  routedIpv4Prefixes: string[];
  routedIpv6Prefixes: string[];
  socketPath: string;
  /**
   * Ids of the security groups attached to the vNIC. Empty: no filtering at all. Not empty:
   * ingress and egress are default-deny and {@link DesiredNic.rules} is what is allowed.
   */
  securityGroupIds: string[];
  /** The union of the rules of every attached security group. */
  rules: DesiredRule[];
}

/** A rule's direction: `INGRESS` is traffic to the VM, `EGRESS` traffic from it. */
export type RuleDirectionName = "INGRESS" | "EGRESS";
/** What a rule matches, by the API's RuleProtocol names. */
export type RuleProtocolName = "ALL" | "TCP" | "UDP" | "ICMP" | "ICMPV6";

/** One allow rule of a security group, as the dataplane enforces it. */
export interface DesiredRule {
  id: string;
  securityGroupId: string;
  direction: RuleDirectionName;
  protocol: RuleProtocolName;
  /** 0 with portEnd 0: any port. Only for TCP and UDP. */
  portStart: number;
  portEnd: number;
  /** Normalised CIDR of the remote side, or "" for any address of either family. */
  cidr: string;
}

/** The vNIC states of the API's NicState enum, by name. */
export type NicStateName = "CREATED" | "ACTIVE" | "ERROR";

/** What the dataplane knows of one vNIC. */
export interface NicStatus {
  id: string;
  state: NicStateName;
  /** Why the state is ERROR, or the last disconnect reason. */
  reason?: string;
}

/** Counters of one vNIC, by name. */
export type NicCounters = Record<string, number>;

/** Requests the api sends; each is answered by exactly one {@link Response}. */
export type Request =
  | { type: "SyncState"; networks: DesiredNetwork[]; nics: DesiredNic[] }
  | { type: "UpsertNetwork"; network: DesiredNetwork }
  | { type: "RemoveNetwork"; id: string }
  | { type: "UpsertNic"; nic: DesiredNic }
  | { type: "RemoveNic"; id: string }
  | { type: "GetNicCounters"; id: string }
  | { type: "Ping" }
  | InjectFault;

/**
 * Crashes one actor of the dataplane, as a bug in it would, so that tests can watch the
 * supervisor restart it. `actor` is `vnic:<nic id>`, `net:<network id>` or `tun`. Refused
 * unless the dataplane runs with MVIRT_NET_FAULT_INJECTION=1; no gRPC call sends it.
 */
export type InjectFault = { type: "InjectFault"; actor: string; reason: string };

/** Answers, by request type. */
export interface ResponseByType {
  SyncState: { type: "StateSynced"; nics: NicStatus[] };
  UpsertNetwork: { type: "Done" };
  RemoveNetwork: { type: "Done" };
  UpsertNic: { type: "NicReady"; status: NicStatus };
  RemoveNic: { type: "Done" };
  GetNicCounters: { type: "Counters"; counters: NicCounters };
  Ping: { type: "Pong"; pid: number; uptimeMs: number };
  InjectFault: { type: "Done" };
}

/** Any answer. */
export type Response = ResponseByType[keyof ResponseByType];

/** Events the dataplane sends unasked. */
export type Event = { type: "NicStateChanged"; status: NicStatus };

/** First frame each way. */
export interface Hello {
  type: "Hello";
  version: number;
  /**
   * `diagnostics`: a tool or test that only asks (counters, fault injection); unlike `api`, it
   * does not replace the api's connection.
   */
  role: "api" | "dataplane" | "diagnostics";
  pid: number;
}

/** What travels in one frame. */
export type Envelope =
  | Hello
  | { type: "Request"; id: number; request: Request }
  | { type: "Response"; id: number; response: Response }
  | { type: "Failure"; id: number; code: FailureCode; message: string }
  | { type: "Event"; event: Event };

/** Why a request failed. `invalid` is the requester's fault; `failed` is the dataplane's. */
export type FailureCode = "invalid" | "not_found" | "failed";
