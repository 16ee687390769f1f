/**
 * Teacher EMA (DINOv2 `ssl_meta_arch.py` `update_teacher`; ExPLoRA gives the teacher its own LoRA modules,
 * `dinov2/layers/attention.py`): after every optimizer step
 *   θ_t ← m·θ_t + (1 − m)·θ_s
 * over every student parameter that can change — backbone parameters that train, the LoRA A and B matrices **as
 * separate parameters** (so the teacher's ΔW = s·EMA(A)·EMA(B), not EMA(s·A·B)), and the heads. Frozen parameters
 * are equal in both models, so the EMA leaves them unchanged; the D-ExPLoRA teacher shares those variables with the
 * student instead of copying them (explora-dino.ts). Momentum m follows a cosine from 0.992 to 1 over all iterations:
 * m_k = 1 − (1 − m₀)·(1 + cos(πk/K))/2.
 */
import * as tf from '@tensorflow/tfjs';
import { Schedule, checkSchedule } from '../train/schedule';
import { fmtValue, checkNumber } from '../check';

/** One teacher variable and the student variable it follows. */
export interface EmaPair {
  path: string;
  teacher: tf.Variable;
  student: tf.Variable;
}

/**
 * Pair teacher and student variables by path (`student` gives the order). Every student path must exist in the teacher
 * with the same shape; the teacher must not hold the student's variable itself (a shared variable cannot follow
 * itself).
 */
export function emaPairs(teacher: ReadonlyMap<string, tf.Variable>, student: ReadonlyMap<string, tf.Variable>): EmaPair[] {
  const out: EmaPair[] = [];
  for (const [path, s] of student) {
    const t = teacher.get(path);
    if (!t) throw new Error(`EMA: the teacher has no parameter '${path}' (student parameters must all have a teacher copy)`);
    if (t === s) throw new Error(`EMA: '${path}' is the same variable in teacher and student; the teacher needs its own copy of what trains`);
    if (t.shape.length !== s.shape.length || t.shape.some((d, i) => d !== s.shape[i])) {
      throw new Error(`EMA: '${path}' has shape [${t.shape}] in the teacher and [${s.shape}] in the student`);
    }
    out.push({ path, teacher: t, student: s });
  }
  if (out.length === 0) throw new Error('EMA: nothing to update (empty student parameter set)');
  return out;
}

/** θ_t ← m·θ_t + (1 − m)·θ_s for every pair, in one synchronous tidy (no tensors survive but the variables). */
export function emaUpdate(pairs: readonly EmaPair[], momentum: number): void {
  checkNumber('EMA: momentum', momentum, { min: 0, max: 1 });
  if (momentum === 1) return; // θ_t unchanged (the schedule's last value)
  tf.tidy(() => {
    for (const p of pairs) p.teacher.assign(tf.add(tf.mul(p.teacher, momentum), tf.mul(p.student, 1 - momentum)));
  });
}

/** Cosine momentum schedule base → final over `totalIters` iterations (DINOv2: 0.992 → 1). */
export function teacherMomentumSchedule(totalIters: number, base = 0.992, final = 1): Schedule {
  checkNumber('teacher momentum: base', base, { min: 0, max: 1 });
  checkNumber('teacher momentum: final', final, { min: 0, max: 1 });
  return checkSchedule({ kind: 'cosine', base, min: final, totalIters, warmupIters: 0 }, 'teacher momentum schedule');
}
