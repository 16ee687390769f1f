/**
 * The WebGPU backend (tfjs-backend-webgpu on Dawn) against wasm: tiny ViT + LoRA + ToMe, + PYRA, MAE, the DINOv2
 * losses and two training steps (AdamW + SGD) — outputs, losses and every gradient within 1e-4 of the tensor's
 * scale, parameters after the steps likewise, and no tensor left behind by a step.
 *
 * In CI this runs on Mesa's llvmpipe through Dawn's OpenGL ES backend (compatibility mode, headless EGL); the system
 * packages come from environment/setup-system.sh. Skipped, with the reason, where the optional packages are not
 * installed or the Mesa EGL libraries are missing; everywhere else an adapter that does not come up is a failure.
 */
import * as tf from '@tensorflow/tfjs';
import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { spawnSync } from 'child_process';
import { runCases, CaseResults } from './backend-cases';
import { WEBGPU_SYNC_READ_ERROR, isSoftwareAdapter } from '../lib/webgpu';
import { gpuDeviceNodes } from '../lib/backend';
import { findSharedLibraries } from '../lib/tensorflow-node';

/** What Dawn's GL ES backend opens on Mesa (Debian 12 packages in brackets). */
const MESA_EGL = [
  { file: 'libEGL.so', pkg: 'libegl-dev' }, // Dawn dlopens the unversioned name
  { file: 'libEGL_mesa.so.0', pkg: 'libegl-mesa0' },
];
const MESA_DRI = { file: 'dri/swrast_dri.so', pkg: 'libgl1-mesa-dri' };

function missingMesa(): string[] {
  const libs = findSharedLibraries(MESA_EGL.map((m) => m.file));
  const out = MESA_EGL.filter((m) => libs.missing.includes(m.file)).map((m) => `${m.file} (${m.pkg})`);
  const dri = ['/usr/lib/x86_64-linux-gnu', '/usr/lib64', '/usr/lib'].some((d) => fs.existsSync(path.join(d, MESA_DRI.file)));
  if (!dri) out.push(`${MESA_DRI.file} (${MESA_DRI.pkg})`);
  return out;
}

function installed(pkg: string): boolean {
  try {
    require.resolve(`${pkg}/package.json`);
    return true;
  } catch {
    return false;
  }
}

/** Compare one array: max |a − b| ≤ tol · max |b| (a tensor's own scale), with a floor for all-zero tensors. */
function closeToScale(a: ArrayLike<number>, b: ArrayLike<number>, tol: number, what: string): number {
  assert.equal(a.length, b.length, `${what}: length ${a.length} vs ${b.length}`);
  let scale = 0;
  let diff = 0;
  let at = 0;
  for (let i = 0; i < b.length; i++) {
    scale = Math.max(scale, Math.abs(b[i]));
    const d = Math.abs(a[i] - b[i]);
    if (!(d <= diff)) [diff, at] = [d, i];
  }
  const rel = diff / Math.max(scale, 1e-12);
  assert.ok(diff <= tol * scale + 1e-12, `${what}: max |webgpu − wasm| = ${diff.toExponential(3)} at [${at}] (${a[at]} vs ${b[at]}), ${rel.toExponential(2)} of the scale ${scale.toExponential(3)} > ${tol}`);
  return rel;
}

describe('webgpu backend (Dawn; llvmpipe in CI) against wasm', function () {
  this.timeout(600000);
  let child: { report: Record<string, unknown> & { adapter: { device: string; description: string; software: boolean } | null; backend: string; customKernels: string[] }; results: Record<string, number[]>; syncRead: string } | null = null;
  let wasm: CaseResults | null = null;

  before(async function () {
    if (tf.getBackend() !== 'wasm') this.skip(); // the reference is wasm (a forced VITPEFT_BACKEND run skips this file)
    if (process.platform !== 'linux' || process.arch !== 'x64') this.skip();
    const pkgs = ['webgpu', '@tensorflow/tfjs-backend-webgpu'].filter((p) => !installed(p));
    if (pkgs.length) {
      console.log(`      (skipped: optional packages not installed: ${pkgs.join(', ')})`);
      this.skip();
    }
    const mesa = missingMesa();
    if (gpuDeviceNodes().length === 0 && mesa.length) {
      console.log(`      (skipped: no GPU and no Mesa EGL: ${mesa.join(', ')}; environment/setup-system.sh installs them)`);
      this.skip();
    }
    const out = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'vitpeft-webgpu-')), 'results.json');
    const r = spawnSync(process.execPath, ['--import', 'tsx', path.join(__dirname, 'webgpu-child.ts'), out], {
      env: { ...process.env, VITPEFT_BACKEND: 'webgpu' },
      encoding: 'utf8',
      timeout: 540000,
    });
    const tail = `${r.stdout ?? ''}\n${r.stderr ?? ''}`.split('\n').filter((l) => l.trim() && !/artificially reduced/.test(l)).slice(-15).join('\n');
    assert.equal(r.status, 0, `the webgpu child failed (status ${r.status}, signal ${r.signal}):\n${tail}`);
    child = JSON.parse(fs.readFileSync(out, 'utf8'));
    fs.rmSync(path.dirname(out), { recursive: true, force: true });
    wasm = await runCases();
  });

  it('starts on an adapter, reports it, and installs the chunked AddN', () => {
    const rep = child!.report;
    assert.equal(rep.backend, 'webgpu');
    assert.ok(rep.adapter, 'the report names the adapter');
    assert.equal(rep.adapter!.software, isSoftwareAdapter(rep.adapter!));
    assert.deepEqual(rep.customKernels, ['AddN (chunked to the storage-buffer limit)']);
    console.log(`      adapter: ${rep.adapter!.device} (${rep.adapter!.description}; ${rep.adapter!.software ? 'software' : 'hardware'})`);
  });

  it('a synchronous read of a GPU result fails with a message that says what to do', () => {
    assert.equal(child!.syncRead, WEBGPU_SYNC_READ_ERROR);
  });

  for (const c of ['tome', 'pyra', 'mae', 'dino'] as const) {
    it(`${c}: loss, outputs and every gradient match wasm within 1e-4 of each tensor's scale`, () => {
      const keys = Object.keys(wasm!).filter((k) => k.startsWith(`${c}.`));
      assert.ok(keys.length >= 4, `${c}: only ${keys.length} results`);
      assert.ok(keys.filter((k) => k.includes('.grad.')).length >= 2, `${c}: gradients compared`);
      let worst = 0;
      for (const k of keys) {
        assert.ok(child!.results[k], `webgpu produced no '${k}'`);
        worst = Math.max(worst, closeToScale(child!.results[k], wasm![k], 1e-4, k));
      }
      console.log(`      ${keys.length} arrays, worst ${worst.toExponential(2)} of scale`);
    });
  }

  it('two training steps (AdamW + SGD momentum): same losses and parameters, no tensor left behind', () => {
    const live = child!.results['step.liveTensors'];
    assert.equal(live.length, 3);
    assert.ok(live[0] === live[1] && live[1] === live[2], `live tensors before / after step 1 / after step 2: ${live.join(', ')}`);
    const keys = Object.keys(wasm!).filter((k) => k.startsWith('step.') && k !== 'step.liveTensors');
    assert.ok(keys.length > 10);
    for (const k of keys) closeToScale(child!.results[k], wasm![k], 1e-4, k);
    assert.ok(child!.results['step.loss'][1] < child!.results['step.loss'][0], 'the loss goes down');
  });
});
