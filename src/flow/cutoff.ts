/** Options of {@linkcode Cutoff}. */
export interface CutoffOptions {
  /** Byte cutoff per flow; 0 = unlimited. Default 0. */
  bytes?: number;
  /** Packet cutoff per flow; 0 = unlimited. Default 0. */
  packets?: number;
}

/**
 * The flow cutoff policy: decides whether a packet is stored, from its flow's counters before it.
 *
 * The rule: a flow's counters count every packet seen in either direction, by its *original
 * wire length* (pcap `len`, link-layer header included, not the possibly snaplen-truncated
 * `caplen`); packets that are not stored still count. A packet is stored iff the flow's packet
 * count before it is < the packet cutoff AND the flow's byte count before it is < the byte
 * cutoff (a cutoff of 0 means unlimited). So the packet that crosses the byte cutoff is still
 * stored whole, and a packet cutoff K stores exactly the first K packets of each flow.
 *
 * @example
 * ```ts
 * const cutoff = new Cutoff({ bytes: 65536 });
 * const id = table.observe(info.key, ts, wireLen, info.tcpFlags);
 * if (cutoff.allows(table.packetsBefore, table.bytesBefore)) writer.write(packet);
 * ```
 */
export class Cutoff {
  /** Byte cutoff as configured (0 = unlimited). */
  readonly bytes: number;
  /** Packet cutoff as configured (0 = unlimited). */
  readonly packets: number;
  // 0 mapped to Infinity so allows() is two comparisons and no branches on configuration.
  readonly #byteLimit: number;
  readonly #packetLimit: number;

  constructor(options: CutoffOptions = {}) {
    const bytes = options.bytes ?? 0;
    const packets = options.packets ?? 0;
    checkLimit("byte", bytes);
    checkLimit("packet", packets);
    this.bytes = bytes;
    this.packets = packets;
    this.#byteLimit = bytes === 0 ? Infinity : bytes;
    this.#packetLimit = packets === 0 ? Infinity : packets;
  }

  /** True when neither cutoff is set: every packet is stored. */
  get unlimited(): boolean {
    return this.bytes === 0 && this.packets === 0;
  }

  /**
   * Whether to store a packet, given its flow's packet and byte counts BEFORE this packet
   * (the flow table's `packetsBefore` and `bytesBefore`). Allocates nothing.
   */
  allows(packetsBefore: number, bytesBefore: number): boolean {
    return packetsBefore < this.#packetLimit && bytesBefore < this.#byteLimit;
  }
}

function checkLimit(what: string, value: number): void {
  if (!Number.isSafeInteger(value) || value < 0) {
    throw new RangeError(
      `Invalid ${what} cutoff ${value}: expected a non-negative integer (0 = unlimited)`,
    );
  }
}
