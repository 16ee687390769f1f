/**
 * The entry of a kit worker thread (started by `pool.ts`; not imported by anything else).
 *
 * It starts the backend with the kit's fast kernels (`init()`, the same backend choice as the main thread: the
 * environment is shared), installs the data-parallel context (rank, size, the collectives over the pool's shared
 * memory), requires the job's module and calls its export with the job's arguments (plain data: nothing but the
 * module path crosses the thread boundary as code), then posts the result. Any error is posted with its name, message
 * and stack (and, for a wasm heap exhaustion, the bytes asked for and the heap size), and the pool's abort flag is set
 * so that the other workers stop waiting for this one.
 */
import { parentPort, workerData } from 'worker_threads';
import { init } from '../backend';
import { Collective, ParallelAbort, SharedBuffers } from '../parallel/collective';
import { setParallelContext } from '../parallel/context';
import { WasmOutOfMemory } from '../ops/wasm-heap';
import type { JobContext, WorkerData, WorkerMessage } from './protocol';

const port = parentPort;
if (!port) throw new Error('lib/parallel/worker.ts is the entry of a worker thread; it cannot run on the main thread');

const data = workerData as WorkerData;
const post = (m: WorkerMessage, transfer?: ArrayBuffer[]): void => port.postMessage(m, transfer ?? []);

const inbox: unknown[] = [];
const waiting: Array<(m: unknown) => void> = [];
port.on('message', (m: unknown) => {
  const w = waiting.shift();
  if (w) w(m);
  else inbox.push(m);
});

function describe(e: unknown): Extract<WorkerMessage, { kind: 'error' }> {
  const err = e instanceof Error ? e : new Error(String(e));
  const oom = err instanceof WasmOutOfMemory ? { requested: err.requested, heap: err.heap, during: err.during } : undefined;
  return {
    kind: 'error',
    rank: data.rank,
    name: err.name,
    message: err.message,
    stack: err.stack ?? `${err.name}: ${err.message}`,
    aborted: err instanceof ParallelAbort,
    ...(oom ? { oom } : {}),
  };
}

let collective: Collective | null = null;

function fail(e: unknown): void {
  // stop the other ranks from waiting for this one, then report
  if (collective && !(e instanceof ParallelAbort)) collective.abort();
  post(describe(e));
}

process.on('uncaughtException', (e) => fail(e));
process.on('unhandledRejection', (e) => fail(e));

async function main(): Promise<void> {
  const t0 = Date.now();
  await init();
  const shared: SharedBuffers = data.shared;
  collective = new Collective(shared, data.rank);
  setParallelContext({ rank: data.rank, size: data.size, collective });
  // eslint-disable-next-line @typescript-eslint/no-var-requires
  const mod = require(data.job.module) as Record<string, unknown>;
  const fn = mod[data.job.export];
  if (typeof fn !== 'function') throw new Error(`worker job: ${data.job.module} has no exported function '${data.job.export}'`);
  const ctx: JobContext = {
    rank: data.rank,
    size: data.size,
    progress: (p) => post({ kind: 'progress', rank: data.rank, ...p, waitMs: collective!.waitMs }),
    send: (payload, transfer) => post({ kind: 'message', rank: data.rank, payload }, transfer),
    next: () => (inbox.length ? Promise.resolve(inbox.shift()) : new Promise((res) => waiting.push(res))),
  };
  post({ kind: 'ready', rank: data.rank, ms: Date.now() - t0 });
  const result = await (fn as (args: unknown, c: JobContext) => unknown)(data.job.args, ctx);
  post({ kind: 'done', rank: data.rank, result, waitMs: collective.waitMs, barriers: collective.barriers });
}

main().catch(fail);
