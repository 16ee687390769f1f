/**
 * Analytic multiply-accumulates (MACs) per image of a ViT under any merge schedule: the counting rule that reproduces
 * the FLOPs of the PYRA paper's low / high-compression tables (ViT-B 17.56 / 8.77 / 5.07 G, ViT-L 61.55 / 30.96 G).
 *
 * Counting rule (the one behind the paper-level numbers):
 *   patch embedding  N_p · p²C · D
 *   block l          4 N D² + 2 N² D   (qkv + proj, QKᵀ + AV; on the pre-merge N)
 *                    2 h N' D          (fc1 + fc2 with hidden width h = mlpRatio·D, i.e. 8 N' D²; on the post-merge N')
 *   PYRA (optional)  2 r D             (δ_D = W_rᵀM and δ_r = M W_Dᵀ)
 * Not counted: head, LayerNorms, softmax, GELU, the matching itself (reported separately as `matching`).
 * Expected (224², /16): ViT-B 17.56 G unmerged, 8.77 G low, 5.07 G high; ViT-L 61.55 / 30.96 / 17.92 G;
 * DeiT-B distilled 17.66 / 9.65 / 5.16 G. FLOPs ≈ 2 × MACs; PYRA's code prints fvcore counts / 2³⁰ (`fvcoreG`).
 */
import { checkKeys } from '../check';
import { VitConfig, mlpHidden } from '../vit/config';
import { numPatches } from '../vit/params';
import { RSchedule, CapPolicy, tokenCounts } from './schedule';

export interface BlockMacs {
  index: number;
  /** tokens entering the block */
  tokensIn: number;
  /** tokens merged away in this block (after the cap) */
  r: number;
  tokensOut: number;
  /** 4 N D² */
  attnLinear: number;
  /** 2 N² D */
  attnMatmul: number;
  /** 2 h N' D */
  mlp: number;
  /** PYRA generators 2 r D (0 unless `pyra`) */
  pyra: number;
  /** bipartite scores N_A · N_B · d_head (not in `total`) */
  matching: number;
}

export interface MacsReport {
  /** Patch embedding + blocks (+ PYRA when asked): the paper-level total. */
  total: number;
  patchEmbed: number;
  blocks: BlockMacs[];
  /** Σ PYRA generator MACs (included in total when `pyra`). */
  pyra: number;
  /** Σ matching MACs (never in total). */
  matching: number;
  /** Tokens entering block 0, then after each block. */
  tokens: number[];
  /** total / 1e9 */
  gmacs: number;
  /** total / 2³⁰ (what fvcore-based scripts print as "GFLOPs") */
  fvcoreG: number;
}

export interface MacsOptions {
  /** Merge schedule (default 0 = unmerged). */
  schedule?: RSchedule;
  /** Count PYRA's 2rD per merging block (default false). */
  pyra?: boolean;
  /** The sequence carries a DeiT distillation token (one more token, protected). */
  distillToken?: boolean;
  /** Cap policy for the schedule (default 'cap'). */
  onCap?: CapPolicy;
}

/**
 * MACs per image for a config and schedule.
 * @example vitMacs(vitConfig('vit_base_patch16_224'), { schedule: pyraSchedule('vit_base_patch16_224', 'low') }).gmacs // ≈ 8.77
 */
export function vitMacs(cfg: VitConfig, opts: MacsOptions = {}): MacsReport {
  checkKeys('vitMacs options', opts, ['schedule', 'pyra', 'distillToken', 'onCap']);
  const D = cfg.embedDim;
  const np = numPatches(cfg);
  const prot = 1 + (opts.distillToken ? 1 : 0) + cfg.numRegisters;
  const n0 = np + prot;
  const counts = tokenCounts(opts.schedule ?? 0, cfg.depth, { numTokens: n0, protectedTokens: prot, onCap: opts.onCap ?? 'cap' });
  const patchEmbed = np * cfg.patchSize * cfg.patchSize * cfg.inChans * D;
  const hidden = mlpHidden(cfg);
  const dh = D / cfg.numHeads;
  const blocks: BlockMacs[] = counts.r.map((r, i) => {
    const n = counts.before[i];
    const n2 = counts.tokens[i + 1];
    return {
      index: i,
      tokensIn: n,
      r,
      tokensOut: n2,
      attnLinear: 4 * n * D * D,
      attnMatmul: 2 * n * n * D,
      mlp: 2 * hidden * n2 * D,
      pyra: opts.pyra && r > 0 ? 2 * r * D : 0,
      matching: r > 0 ? Math.ceil(n / 2) * Math.floor(n / 2) * dh : 0,
    };
  });
  const sum = (f: (b: BlockMacs) => number): number => blocks.reduce((a, b) => a + f(b), 0);
  const pyra = sum((b) => b.pyra);
  const total = patchEmbed + sum((b) => b.attnLinear + b.attnMatmul + b.mlp) + pyra;
  return { total, patchEmbed, blocks, pyra, matching: sum((b) => b.matching), tokens: counts.tokens, gmacs: total / 1e9, fvcoreG: total / 2 ** 30 };
}
