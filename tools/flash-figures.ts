// The offline journal's flash figures (modules/storage/journal.ts over test/support/flash-sim.ts, a
// NOR flash in memory that counts every byte written and every erase):
//   - flash bytes written and erases per 1,000 messages of 100 bytes queued and acknowledged, online
//     (each acknowledged soon after: 1 or 10 unacknowledged) and after an outage (queued until full,
//     then drained);
//   - how many such messages a partition holds before append() reports it full;
//   - the wear life of the partition at 1 message a second on a flash rated for 100,000 erase cycles
//     a sector (the ESP32 modules' SPI flash), since the ring erases every sector in turn;
//   - the journal's RAM.
//
//   node --import tsx tools/flash-figures.ts [--kb 64] [--messages 100000] [--payload 100] [--json]
import { Journal, JOURNAL_FULL, journalRecordBytes } from "../modules/storage/journal.ts";
import { SimFlash } from "../test/support/flash-sim.ts";

const SECTOR = 4096;
const CYCLES = 100_000;

function option(name: string, fallback: number): number {
  const at = process.argv.indexOf("--" + name);
  if (at < 0) return fallback;
  const value = Number(process.argv[at + 1]);
  if (!Number.isInteger(value) || value <= 0) {
    console.error("flash-figures: --" + name + " needs a positive whole number");
    process.exit(2);
  }
  return value;
}

const kilobytes = option("kb", 64);
const messages = option("messages", 100_000);
const payloadBytes = option("payload", 100);
const json = process.argv.includes("--json");
const blocks = (kilobytes * 1024) / SECTOR;
if (!Number.isInteger(blocks) || blocks < 3) {
  console.error("flash-figures: --kb must be a multiple of 4 of at least 12");
  process.exit(2);
}

interface Run {
  name: string;
  messages: number;
  bytesWritten: number;
  erases: number;
  maxErases: number;
  minErases: number;
  compactions: number;
}

function journalOver(sim: SimFlash): Journal {
  const journal = new Journal(sim, { maxPayloadBytes: payloadBytes, maxRecords: 4096 });
  journal.open();
  return journal;
}

const payload = new Uint8Array(payloadBytes).map((_, i) => i & 0xff);

/** `count` messages, each acknowledged once more than `window` are waiting. */
function online(window: number, count: number): Run {
  const sim = new SimFlash(SECTOR, blocks);
  const journal = journalOver(sim);
  for (let i = 0; i < count; i++) {
    if (journal.append(payload) === JOURNAL_FULL) throw new Error("full online");
    while (journal.count > window) journal.acknowledge(journal.seqAt(0));
  }
  while (journal.count > 0) journal.acknowledge(journal.seqAt(0));
  return summary("online, " + window + " unacknowledged at most", count, sim, journal);
}

/** Outages: messages queued until the journal is full, then all acknowledged; repeated. */
function outages(count: number): { run: Run; capacity: number } {
  const sim = new SimFlash(SECTOR, blocks);
  const journal = journalOver(sim);
  let done = 0;
  let capacity = 0;
  while (done < count) {
    let queued = 0;
    while (done < count && journal.append(payload) !== JOURNAL_FULL) {
      queued++;
      done++;
    }
    if (capacity === 0) capacity = queued;
    while (journal.count > 0) journal.acknowledge(journal.seqAt(0));
  }
  return { run: summary("outages: queued until full, then drained", count, sim, journal), capacity };
}

function summary(name: string, count: number, sim: SimFlash, journal: Journal): Run {
  let maxErases = 0;
  let minErases = Infinity;
  for (const erases of sim.eraseCounts) {
    maxErases = Math.max(maxErases, erases);
    minErases = Math.min(minErases, erases);
  }
  return { name, messages: count, bytesWritten: sim.bytesWritten, erases: sim.erases, maxErases, minErases, compactions: journal.compactions };
}

const runs = [online(1, messages), online(10, messages)];
const outage = outages(messages);
runs.push(outage.run);

const perThousand = (value: number, run: Run): number => (value * 1000) / run.messages;
const lifeYears = (run: Run): number => {
  // Every sector takes its turn: the most-erased sector reaches CYCLES after this many messages.
  const messagesPerSectorErase = run.messages / Math.max(1, run.maxErases);
  return (CYCLES * messagesPerSectorErase) / (365.25 * 24 * 3600);
};

if (json) {
  console.log(JSON.stringify({ kilobytes, payloadBytes, recordBytes: journalRecordBytes(payloadBytes), capacity: outage.capacity, runs: runs.map((run) => ({ ...run, bytesPer1000: perThousand(run.bytesWritten, run), erasesPer1000: perThousand(run.erases, run), lifeYearsAt1PerSecond: lifeYears(run) })) }, null, 2));
} else {
  const recordBytes = journalRecordBytes(payloadBytes);
  console.log(`Journal on a ${kilobytes} KB partition (${blocks} sectors of ${SECTOR} bytes), ${payloadBytes}-byte messages (${recordBytes}-byte records + 12-byte acknowledgements), ${messages.toLocaleString("en")} messages a run:`);
  console.log("");
  console.log("| run | flash bytes written per 1,000 messages | erases per 1,000 | erases per sector, least-most | compactions | wear life at 1 message/s |");
  console.log("|---|---|---|---|---|---|");
  for (const run of runs) {
    console.log(`| ${run.name} | ${Math.round(perThousand(run.bytesWritten, run)).toLocaleString("en")} | ${perThousand(run.erases, run).toFixed(1)} | ${run.minErases}-${run.maxErases} | ${run.compactions} | ${lifeYears(run).toFixed(1)} years |`);
  }
  console.log("");
  console.log(`Capacity: ${outage.capacity} messages queued before append() reports the journal full (one sector is always the erased spare).`);
  console.log(`Wear life: ${blocks} sectors x ${CYCLES.toLocaleString("en")} erase cycles, every sector erased in turn; the life scales with the partition's size.`);
  console.log(`RAM: the scratch record (${Math.max(256, recordBytes)} bytes), 13 bytes per live record of maxRecords, 13 bytes per sector.`);
}
