/**
 * The query language as SQL over the exported flow rows (src/export/schema.ts), for `cutcap fleet`.
 *
 * A row is a whole flow of one file, so a query is translated the way a sensor matches a flow
 * before looking at its packets (src/query/match.ts flowTruth): key predicates exactly, time
 * predicates against the flow's [first, last]. Two translations are built side by side —
 * `may` (some packet of the flow may match: flowTruth is not False) and `all` (every packet
 * matches: flowTruth is True) — because `not` swaps them. A flow selected by `may` but not `all`
 * straddles a time bound: its packets are filtered by the sensor that holds them.
 */
import { formatQuery, type Query, QueryError } from "../query/ast.ts";
import { formatCommunityId } from "../flow/community_id.ts";
import { wordPairs } from "../export/schema.ts";
import { sqlString } from "../export/clickhouse.ts";

/** The two translations of a query. */
export interface FlowSql {
  /** Some packet of the flow may match. */
  may: string;
  /** Every packet of the flow matches. */
  all: string;
}

/** Translates a parsed query (sensor terms included) into SQL conditions on flow rows. */
export function querySql(q: Query): FlowSql {
  switch (q.type) {
    case "and":
    case "or": {
      const parts = q.children.map(querySql);
      const op = q.type === "and" ? " AND " : " OR ";
      return {
        may: `(${parts.map((p) => p.may).join(op)})`,
        all: `(${parts.map((p) => p.all).join(op)})`,
      };
    }
    case "not": {
      const inner = querySql(q.child);
      return { may: `(NOT ${inner.all})`, all: `(NOT ${inner.may})` };
    }
    case "time": {
      const us = Math.round(q.at * 1e6);
      return q.op === "after"
        ? { may: `(last_us >= ${us})`, all: `(first_us >= ${us})` }
        : { may: `(first_us < ${us})`, all: `(last_us < ${us})` };
    }
    case "mpls":
      // Inner VLAN tags and MPLS labels are in the sensors' indexes, not in the flow rows (so
      // `vlan N` here sees the outermost tag only).
      throw new QueryError(
        `Unsupported word "mpls" at position 0: the fleet's flow rows do not hold MPLS labels, ask a sensor's /query`,
        0,
      );
    default: {
      const exact = keySql(q);
      return { may: exact, all: exact };
    }
  }
}

const IP_KINDS = "kind IN ('ipv4', 'ipv6')";

/** Predicates that depend on the flow key (and the sensor) only. */
function keySql(q: Query): string {
  switch (q.type) {
    case "address": {
      const [fromHi, fromLo] = wordPairs(q.from);
      const [toHi, toLo] = wordPairs(q.to);
      const within = (end: string) =>
        fromHi === toHi
          ? `(${end}_hi = ${fromHi} AND ${end}_lo BETWEEN ${fromLo} AND ${toLo})`
          : `((${end}_hi > ${fromHi} OR (${end}_hi = ${fromHi} AND ${end}_lo >= ${fromLo})) AND ` +
            `(${end}_hi < ${toHi} OR (${end}_hi = ${toHi} AND ${end}_lo <= ${toLo})))`;
      return `(kind = '${kindOf(q.family)}' AND (${within("a")} OR ${within("b")}))`;
    }
    case "port":
      return `(${IP_KINDS} AND proto IN (6, 17, 132) AND (src_port BETWEEN ${q.from} AND ${q.to} OR ` +
        `dst_port BETWEEN ${q.from} AND ${q.to}))`;
    case "proto":
      return `(${
        q.family === 0 ? IP_KINDS : `kind = '${kindOf(q.family)}'`
      } AND proto = ${q.proto})`;
    case "family":
      return `(kind = '${kindOf(q.family)}')`;
    case "vlan":
      return `(vlan = ${q.vlan})`;
    case "sensor":
      return `(sensor = ${sqlString(q.name)})`;
    case "cid":
      // Rows carry the ID with the seed their sensor indexed with.
      return `(community_id = ${sqlString(formatCommunityId(q.digest))})`;
    case "cut":
      return q.cut ? "(cut_packet != 0)" : "(cut_packet = 0)";
    case "total":
      return `(total_${q.what} ${q.op} ${q.value})`;
    case "mac": {
      const mac = sqlString(formatQuery(q).split(" ")[2]);
      const ends = q.dir === "src"
        ? `src = ${mac}`
        : q.dir === "dst"
        ? `dst = ${mac}`
        : `(src = ${mac} OR dst = ${mac})`;
      return `(kind = 'l2' AND ${ends})`;
    }
    case "ethertype":
      return `(kind = 'l2' AND ether_type = ${q.etherType})`;
    default:
      throw new Error(`Unexpected ${q.type} node in keySql`);
  }
}

function kindOf(family: 4 | 6): string {
  return family === 4 ? "ipv4" : "ipv6";
}
