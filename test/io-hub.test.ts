/**
 * Hub cache (lib/io/hub.ts) and fromPretrained (lib/io/pretrained.ts) against a local HTTP server that speaks the hub's
 * resolve protocol (HEAD with X-Repo-Commit / ETag for git files, a redirect to a "CDN" host with X-Linked-Etag /
 * X-Linked-Size for LFS files, Range requests, 401 for private repos, X-Error-Code on 404). No internet is used.
 * fromPretrained is checked end to end: a timm repo serving the real-timm fixture (timm_reg4.safetensors) reproduces
 * timm's logits, and transformers repos (safetensors, and pytorch_model.bin through the safe .pth reader) reproduce
 * the PyTorch references.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as http from 'http';
import * as crypto from 'crypto';
import { AddressInfo } from 'net';
import * as tf from '@tensorflow/tfjs';
import { strict as assert } from 'assert';
import { hubDownload, hubDownloadFirst, HubEntryNotFound, hubCacheDir, fromPretrained, vitForward, vitShapes, VitConfig, vitConfigFromTimm, vitConfigFromHf, timmArchKwargs } from '../lib';
import { randArray, maxAbsDiff } from './util';

const FX = path.join(__dirname, 'fixtures');
const CK = path.join(FX, 'ckpt');

interface FakeFile {
  body: Buffer;
  lfs: boolean;
  /** serve these bytes instead (a corrupted CDN) */
  serve?: Buffer;
}
interface FakeRepo {
  commit: string;
  files: Record<string, FakeFile>;
  token?: string;
}
interface Seen {
  method: string;
  url: string;
  host: string;
  auth?: string;
  range?: string;
}

const sha256 = (b: Buffer): string => crypto.createHash('sha256').update(b).digest('hex');
const gitSha1 = (b: Buffer): string => crypto.createHash('sha1').update(Buffer.concat([Buffer.from(`blob ${b.length}\0`), b])).digest('hex');

class FakeHub {
  readonly repos = new Map<string, FakeRepo>();
  readonly seen: Seen[] = [];
  /** sha256 → bytes to send before dropping the connection (once) */
  readonly failOnce = new Map<string, number>();
  private server!: http.Server;
  port = 0;

  async start(): Promise<void> {
    this.server = http.createServer((req, res) => this.handle(req, res));
    await new Promise<void>((r) => this.server.listen(0, r));
    this.port = (this.server.address() as AddressInfo).port;
  }
  async stop(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((r) => this.server.close(() => r()));
  }
  get endpoint(): string {
    return `http://localhost:${this.port}`;
  }
  add(repoId: string, files: Record<string, Buffer | FakeFile>, token?: string): FakeRepo {
    const f: Record<string, FakeFile> = {};
    for (const [k, v] of Object.entries(files)) f[k] = Buffer.isBuffer(v) ? { body: v, lfs: !/\.(json|md|txt)$/.test(k) } : v;
    const repo = { commit: crypto.createHash('sha1').update(repoId).digest('hex'), files: f, token };
    this.repos.set(repoId, repo);
    return repo;
  }
  private handle(req: http.IncomingMessage, res: http.ServerResponse): void {
    const url = req.url ?? '';
    this.seen.push({ method: req.method ?? '', url, host: req.headers.host ?? '', auth: req.headers.authorization, range: req.headers.range });
    const cdn = /^\/cdn\/([0-9a-f]{64})$/.exec(url);
    if (cdn) return this.cdn(cdn[1], req, res);
    const m = /^\/([^/]+\/[^/]+)\/resolve\/([^/]+)\/(.+)$/.exec(url);
    if (!m) {
      res.writeHead(404).end();
      return;
    }
    const [, repoId, rev, file] = m;
    const repo = this.repos.get(repoId);
    if (!repo) {
      res.writeHead(404, { 'X-Error-Code': 'RepoNotFound' }).end();
      return;
    }
    if (repo.token && req.headers.authorization !== `Bearer ${repo.token}`) {
      res.writeHead(401, { 'X-Error-Code': 'GatedRepo', 'X-Error-Message': 'Access to this repo is restricted' }).end();
      return;
    }
    if (rev !== 'main' && rev !== repo.commit) {
      res.writeHead(404, { 'X-Error-Code': 'RevisionNotFound' }).end();
      return;
    }
    const f = repo.files[decodeURIComponent(file)];
    if (!f) {
      res.writeHead(404, { 'X-Error-Code': 'EntryNotFound', 'X-Repo-Commit': repo.commit }).end();
      return;
    }
    if (f.lfs) {
      const sha = sha256(f.body);
      res.writeHead(302, {
        Location: `http://127.0.0.1:${this.port}/cdn/${sha}`,
        'X-Repo-Commit': repo.commit,
        'X-Linked-Etag': `"${sha}"`,
        'X-Linked-Size': String(f.body.length),
        ETag: '"not-the-content-hash"',
      });
      res.end();
      return;
    }
    res.writeHead(200, { ETag: `"${gitSha1(f.body)}"`, 'X-Repo-Commit': repo.commit, 'Content-Length': String(f.body.length) });
    res.end(req.method === 'HEAD' ? undefined : f.body);
  }
  private cdn(sha: string, req: http.IncomingMessage, res: http.ServerResponse): void {
    let file: FakeFile | undefined;
    for (const r of this.repos.values()) for (const f of Object.values(r.files)) if (sha256(f.body) === sha) file = f;
    if (!file) {
      res.writeHead(404).end();
      return;
    }
    const body = file.serve ?? file.body;
    const m = /^bytes=(\d+)-$/.exec(req.headers.range ?? '');
    const start = m ? Number(m[1]) : 0;
    if (start >= body.length) {
      res.writeHead(416).end();
      return;
    }
    const part = body.subarray(start);
    res.writeHead(m ? 206 : 200, { 'Content-Length': String(part.length), ...(m ? { 'Content-Range': `bytes ${start}-${body.length - 1}/${body.length}` } : {}) });
    const cut = this.failOnce.get(sha);
    if (cut !== undefined) {
      this.failOnce.delete(sha);
      res.write(part.subarray(0, cut), () => res.socket?.destroy());
      return;
    }
    res.end(part);
  }
}

describe('io: hub cache and fromPretrained (local fake hub)', function () {
  this.timeout(60000);
  const hub = new FakeHub();
  let cache = '';
  const env = { ...process.env };
  before(async () => {
    await hub.start();
  });
  after(async () => {
    await hub.stop();
  });
  beforeEach(() => {
    cache = fs.mkdtempSync(path.join(os.tmpdir(), 'vitpeft-hub-'));
    hub.seen.length = 0;
  });
  afterEach(() => {
    fs.rmSync(cache, { recursive: true, force: true });
    for (const k of ['HF_HUB_OFFLINE', 'HF_ENDPOINT', 'HF_TOKEN', 'HF_HUB_CACHE', 'HF_HOME']) {
      if (env[k] === undefined) delete process.env[k];
      else process.env[k] = env[k];
    }
  });

  it('downloads git and LFS files into the standard cache layout, verified, then serves them from the cache', async () => {
    const weights = crypto.randomBytes(200_000);
    const repo = hub.add('org/model', { 'config.json': Buffer.from('{"a": 1}'), 'model.safetensors': weights });
    const c = await hubDownload('org/model', 'config.json', { endpoint: hub.endpoint, cacheDir: cache, token: false });
    const w = await hubDownload('org/model', 'model.safetensors', { endpoint: hub.endpoint, cacheDir: cache, token: false });
    assert.deepEqual([c.source, c.verified, w.source, w.verified], ['download', 'git-sha1', 'download', 'sha256']);
    const root = path.join(cache, 'models--org--model');
    assert.equal(fs.readFileSync(path.join(root, 'refs', 'main'), 'utf8'), repo.commit);
    assert.equal(w.path, path.join(root, 'snapshots', repo.commit, 'model.safetensors'));
    assert.equal(fs.readlinkSync(w.path), path.join('..', '..', 'blobs', sha256(weights)));
    assert.ok(fs.readFileSync(w.path).equals(weights));
    assert.equal(fs.readlinkSync(c.path), path.join('..', '..', 'blobs', gitSha1(Buffer.from('{"a": 1}'))));
    // the CDN got no token; the hub did not redirect git files
    assert.ok(hub.seen.some((s) => s.url.startsWith('/cdn/') && s.host.startsWith('127.0.0.1')));
    hub.seen.length = 0;
    const again = await hubDownload('org/model', 'model.safetensors', { endpoint: hub.endpoint, cacheDir: cache, token: false });
    assert.equal(again.source, 'cache');
    assert.deepEqual(hub.seen.map((s) => s.method), ['HEAD']);
  });

  it('resumes an interrupted download with a Range request; refuses a corrupted one and keeps nothing', async () => {
    const weights = crypto.randomBytes(300_000);
    hub.add('org/resume', { 'config.json': Buffer.from('{}'), 'model.safetensors': weights });
    hub.failOnce.set(sha256(weights), 120_000);
    const o = { endpoint: hub.endpoint, cacheDir: cache, token: false as const };
    await assert.rejects(hubDownload('org/resume', 'model.safetensors', o), (e: Error) => /'model\.safetensors' of 'org\/resume'.*(run again to resume)/.test(e.message));
    const partial = path.join(cache, 'models--org--resume', 'blobs', `${sha256(weights)}.incomplete`);
    const have = fs.statSync(partial).size;
    assert.ok(have > 0 && have < weights.length, `partial file has ${have} bytes`);
    hub.seen.length = 0;
    const w = await hubDownload('org/resume', 'model.safetensors', o);
    assert.equal(w.source, 'resumed');
    assert.equal(w.verified, 'sha256');
    assert.ok(hub.seen.some((s) => s.range === `bytes=${have}-`), 'no Range request');
    assert.ok(fs.readFileSync(w.path).equals(weights));
    assert.ok(!fs.existsSync(partial));
    // corrupted CDN bytes: sha256 mismatch, no blob, no pointer, no partial file
    const good = crypto.randomBytes(5000);
    const bad = Buffer.from(good);
    bad[100] ^= 1;
    hub.add('org/corrupt', { 'model.safetensors': { body: good, lfs: true, serve: bad } });
    await assert.rejects(hubDownload('org/corrupt', 'model.safetensors', o), /sha256 [0-9a-f]{64} does not match the hub's [0-9a-f]{64} \(corrupted download\)/);
    const root = path.join(cache, 'models--org--corrupt');
    assert.deepEqual(fs.readdirSync(path.join(root, 'blobs')), []);
    assert.ok(!fs.existsSync(path.join(root, 'snapshots')) || fs.readdirSync(path.join(root, 'snapshots')).every((d) => fs.readdirSync(path.join(root, 'snapshots', d)).length === 0));
  });

  it('offline mode (HF_HUB_OFFLINE) and an unreachable hub serve from the cache; missing files are named', async () => {
    hub.add('org/off', { 'config.json': Buffer.from('{"x": 2}') });
    await hubDownload('org/off', 'config.json', { endpoint: hub.endpoint, cacheDir: cache });
    hub.seen.length = 0;
    process.env.HF_HUB_OFFLINE = '1';
    const c = await hubDownload('org/off', 'config.json', { endpoint: hub.endpoint, cacheDir: cache });
    assert.equal(c.source, 'cache');
    assert.equal(hub.seen.length, 0, 'offline mode used the network');
    await assert.rejects(hubDownload('org/off', 'model.safetensors', { endpoint: hub.endpoint, cacheDir: cache }), /'model\.safetensors' of 'org\/off' \(revision 'main'\) is not in the cache at .* and offline mode is on/);
    delete process.env.HF_HUB_OFFLINE;
    const dead = await hubDownload('org/off', 'config.json', { endpoint: 'http://127.0.0.1:9', cacheDir: cache, timeoutMs: 2000 });
    assert.equal(dead.source, 'cache');
  });

  it('HF_ENDPOINT, HF_HUB_CACHE and tokens (option or HF_TOKEN) as huggingface_hub reads them; errors say what is wrong', async () => {
    hub.add('private/model', { 'config.json': Buffer.from('{}'), 'model.safetensors': crypto.randomBytes(1000) }, 'secret');
    process.env.HF_ENDPOINT = hub.endpoint;
    process.env.HF_HUB_CACHE = cache;
    assert.equal(hubCacheDir(), cache);
    await assert.rejects(hubDownload('private/model', 'config.json', { token: false }), /HTTP 401 GatedRepo — a private or gated repo needs a token \(HF_TOKEN/);
    const c = await hubDownload('private/model', 'config.json', { token: 'secret' });
    assert.ok(c.path.startsWith(cache));
    process.env.HF_TOKEN = 'secret';
    hub.seen.length = 0;
    await hubDownload('private/model', 'model.safetensors');
    assert.ok(hub.seen.some((s) => s.method === 'HEAD' && s.auth === 'Bearer secret'));
    assert.ok(hub.seen.filter((s) => s.url.startsWith('/cdn/')).every((s) => s.auth === undefined), 'the token went to the CDN host');
    await assert.rejects(hubDownload('nobody/nothing', 'config.json'), /repository 'nobody\/nothing' not found/);
    await assert.rejects(hubDownload('private/model', 'config.json', { revision: 'v9' }), /revision 'v9' not found/);
    await assert.rejects(hubDownload('private/model', 'nope.bin'), (e: Error) => e instanceof HubEntryNotFound);
    await assert.rejects(hubDownload('../etc', 'passwd'), /not a valid repo id/);
    await assert.rejects(hubDownload('org/x', '../../escape'), /not a valid file path/);
  });

  it("the real repos' config.json contents resolve to the released models (parameter counts from shapes)", () => {
    const count = (cfg: VitConfig): number => [...vitShapes(cfg)].reduce((a, [, v]) => a + v.shape.reduce((x, y) => x * y, 1), 0);
    // timm/vit_large_patch14_dinov2.lvd142m: architecture + pretrained_cfg (input 518, no head); timm keeps no mask_token
    const kw = { ...timmArchKwargs('vit_large_patch14_dinov2'), img_size: 518, num_classes: 0 };
    const c = vitConfigFromTimm(kw);
    assert.equal(count(c), 304_368_640 - 1024);
    assert.equal(count(vitConfigFromTimm({ ...timmArchKwargs('vit_base_patch16_224'), num_classes: 0 })), 85_798_656);
    assert.equal(vitConfigFromTimm({ ...timmArchKwargs('vit_small_patch14_reg4_dinov2'), img_size: 518 }).numRegisters, 4);
    assert.throws(() => timmArchKwargs('vit_giant_patch14_dinov2'), /not one the kit maps/);
    // facebook/dinov2-large (transformers Dinov2Config values)
    const hf = vitConfigFromHf({ model_type: 'dinov2', hidden_size: 1024, num_hidden_layers: 24, num_attention_heads: 16, mlp_ratio: 4, image_size: 518, patch_size: 14, layer_norm_eps: 1e-6, layerscale_value: 1.0, use_swiglu_ffn: false, qkv_bias: true, hidden_act: 'gelu' });
    assert.equal(count(hf.vit), 304_368_640);
    assert.throws(() => vitConfigFromHf({ model_type: 'dinov2', hidden_size: 1536, num_hidden_layers: 40, num_attention_heads: 24, use_swiglu_ffn: true }), /use_swiglu_ffn/);
    // facebook/vit-mae-large: eps 1e-12, decoder 512 × 8
    const mae = vitConfigFromHf({ model_type: 'vit_mae', hidden_size: 1024, num_hidden_layers: 24, num_attention_heads: 16, intermediate_size: 4096, image_size: 224, patch_size: 16, layer_norm_eps: 1e-12, decoder_hidden_size: 512, decoder_num_hidden_layers: 8, decoder_num_attention_heads: 16, decoder_intermediate_size: 2048 });
    assert.equal(count(mae.vit), 303_301_632);
    assert.deepEqual([mae.decoder!.embedDim, mae.decoder!.depth, mae.decoder!.normEps], [512, 8, 1e-12]);
  });

  it('fromPretrained on a timm repo reproduces real timm (reg4, no_embed_class) logits through the cache', async () => {
    const gold = JSON.parse(fs.readFileSync(path.join(FX, 'timm_golden.json'), 'utf8'));
    const cs = gold.cases.find((c: { name: string }) => c.name === 'reg4');
    const cfg = {
      architecture: 'vit_small_patch14_reg4_dinov2',
      num_classes: 3,
      model_args: { embed_dim: 24, depth: 2, num_heads: 3, global_pool: 'token' },
      pretrained_cfg: { tag: 'micro', input_size: [3, 42, 42], num_classes: 3, crop_pct: 1.0 },
    };
    hub.add('timm/vit_micro_reg4.test', { 'config.json': Buffer.from(JSON.stringify(cfg)), 'model.safetensors': fs.readFileSync(path.join(FX, cs.file)) });
    const p = await fromPretrained('timm/vit_micro_reg4.test', { endpoint: hub.endpoint, cacheDir: cache, token: false });
    assert.equal(p.kind, 'timm');
    assert.equal(p.vit.config.numRegisters, 4);
    assert.equal(p.report.counts.kept, 0);
    assert.ok(p.report.rows.some((r) => r.target === 'register_tokens' && r.status === 'loaded' && /reg_token/.test(r.note ?? '')));
    assert.ok(p.report.rows.some((r) => r.target === 'pos_embed' && r.status === 'converted'));
    const [B, C, H, W] = cs.input.shape;
    const logits = tf.tidy(() => {
      const x = tf.tensor4d(randArray(B * C * H * W, cs.input.rand_array_seed), [B, C, H, W]).transpose([0, 2, 3, 1]) as tf.Tensor4D;
      return vitForward(p.vit, x).logits!.dataSync();
    });
    assert.ok(maxAbsDiff(logits, cs.out.f64.logits) < 1e-5, `logits differ from timm by ${maxAbsDiff(logits, cs.out.f64.logits)}`);
    p.dispose();
  });

  it('fromPretrained on transformers repos: Dinov2WithRegisters (safetensors) and ViTMAE (pytorch_model.bin only)', async () => {
    const gold = JSON.parse(fs.readFileSync(path.join(CK, 'keymaps_golden.json'), 'utf8'));
    const x = (): tf.Tensor4D => tf.tensor4d(gold.input_nhwc, [2, 16, 16, 3]);
    hub.add('facebook/dinov2-micro', {
      'config.json': Buffer.from(JSON.stringify(gold.hf_dinov2_reg2_config)),
      'model.safetensors': fs.readFileSync(path.join(CK, 'hf_dinov2_reg2_micro.safetensors')),
    });
    const d = await fromPretrained('facebook/dinov2-micro', { endpoint: hub.endpoint, cacheDir: cache, token: false });
    assert.equal(d.kind, 'dinov2');
    const ref = gold.hf_dinov2_reg2;
    const cls = tf.tidy(() => vitForward(d.vit, x()).cls.dataSync());
    const refCls = [0, 1].flatMap((b) => ref.values.slice(b * ref.shape[1] * 24, b * ref.shape[1] * 24 + 24));
    assert.ok(maxAbsDiff(cls, refCls) < 2e-5);
    d.dispose();
    hub.add('facebook/vit-mae-micro', {
      'config.json': Buffer.from(JSON.stringify(gold.hf_vitmae_config)),
      'pytorch_model.bin': fs.readFileSync(path.join(CK, 'hf_vitmae_micro_pytorch_model.bin')),
    });
    const m = await fromPretrained('facebook/vit-mae-micro', { endpoint: hub.endpoint, cacheDir: cache, token: false });
    assert.equal(m.files.weights.filename, 'pytorch_model.bin');
    assert.ok(m.mae, 'the MAE decoder was built');
    assert.equal(m.report.format, 'pth');
    const mref = gold.hf_vitmae;
    const mcls = tf.tidy(() => vitForward(m.vit, x()).cls.dataSync());
    assert.ok(maxAbsDiff(mcls, [0, 1].flatMap((b) => mref.values.slice(b * mref.shape[1] * 24, b * mref.shape[1] * 24 + 24))) < 2e-5);
    m.dispose();
    // the first weights file that exists is taken
    const first = await hubDownloadFirst('facebook/vit-mae-micro', ['model.safetensors', 'pytorch_model.bin'], { endpoint: hub.endpoint, cacheDir: cache, token: false });
    assert.equal(first.filename, 'pytorch_model.bin');
  });
});
