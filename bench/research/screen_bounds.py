"""Feasibility of an exact screened correlate mode (issue 5, item 8), measured on real activations.

For every neuron a of seed A and every other seed B, the correlate stage needs max_b corr(a, b) with its argmax,
and the rotation baseline max_i corr(a, R b_layer)_i (SPEC §3). The full computation costs 2·N²·T per pair. This
script checks, against that brute force, a screen that proves its answers:

1. A shared token-space basis Q (K' orthonormal rows): for every (seed, layer), the top-k eigenvectors V of the
   layer's within-layer correlation matrix (the stats stage already has it) give k rows Vᵀ·Z_layer; the union of
   those S·L·k rows is compressed to its top K' principal directions (one pass for their K0×K0 Gram, one more to
   project). Any basis gives valid bounds; a good one gives tight ones.
2. Every neuron of every seed, standardised to a unit vector z over the tokens, is projected once: p = Q·z, and
   its residual norm is ρ = √(1 − |p|²). For any two neurons, corr = p_a·p_b + r_a·r_b with |r_a·r_b| ≤ ρ_a·ρ_b,
   so LB = p_a·p_b − ρ_aρ_b ≤ corr ≤ UB = p_a·p_b + ρ_aρ_b (Cauchy–Schwarz on the residuals).
3. Partners: τ_a = max_b LB(a, b) is a lower bound of the best correlation, so every b with UB(a, b) < τ_a is
   beaten; the exact correlations of the remaining candidates (dots over T, computed in a second pass) contain the
   exact max and argmax. Columns likewise, from the same UB matrix.
4. Baseline: for layer m of B with rotation R and within-layer correlation G, the rotated direction i has
   corr(a, ρ_i) = [(R P_m)_i·p_a + (R r_m)_i·r_a] / √(R G Rᵀ)_ii, and |(R r_m)_i|² = (R (G − P_m P_mᵀ) Rᵀ)_ii is
   exact from G and the projections, so every layer gets an interval [lo_m, hi_m] without touching the tokens.
5. Flags: excess = mean_corr − mean over other seeds of the baseline. Where the interval of excess lies wholly
   on one side of the threshold the flag is proven. Otherwise the baseline is refined exactly, only for the layers
   m whose hi_m reaches max lo (the others cannot hold the max): d dots of length T each.

It prints, per configuration (k, K'), the candidates per neuron, the undecided flags, and the FLOPs of each step
against the full computation, and asserts that every max, argmax, baseline interval and flag agrees with the
brute force. Inputs: raw float32 dumps [N, T] from bench/research/dump-activations.ts.

    python3 bench/research/screen_bounds.py DIR s0,s1,s2,s3 LAYERS [k:K' ...] [--threshold 0.25]
"""
import argparse
import numpy as np


def load(path, n):
    x = np.fromfile(path, dtype=np.float32).astype(np.float64).reshape(n, -1)
    x -= x.mean(1, keepdims=True)
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    assert (norm > 0).all(), f'{path}: a dead neuron; this script does not handle them'
    return (x / norm).astype(np.float32)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('dir')
    ap.add_argument('seeds')
    ap.add_argument('layers', type=int)
    ap.add_argument('configs', nargs='*', default=['16:128', '32:128'])
    ap.add_argument('--threshold', type=float, default=0.25)
    ap.add_argument('--neurons', type=int, default=2048)
    args = ap.parse_args()
    seeds = args.seeds.split(',')
    S, L, N = len(seeds), args.layers, args.neurons
    d = N // L
    Z = [load(f'{args.dir}/{s}.f32', N) for s in seeds]
    T = Z[0].shape[1]
    layer = lambda m: slice(m * d, (m + 1) * d)
    G = [[(Z[s][layer(m)] @ Z[s][layer(m)].T).astype(np.float64) for m in range(L)] for s in range(S)]
    rng = np.random.default_rng(0)
    R = [[None] * L for _ in range(S)]
    for s in range(S):
        for m in range(L):
            r = rng.standard_normal((d, d))
            R[s][m] = r / np.linalg.norm(r, axis=1, keepdims=True)
    rot_var = [[np.einsum('ij,jk,ik->i', R[s][m], G[s][m], R[s][m]) for m in range(L)] for s in range(S)]

    # Brute force: every pair's full matrix, both directions, and the exact baselines per layer.
    C, exact_base_layers = {}, {}
    for a in range(S):
        for b in range(a + 1, S):
            C[a, b] = (Z[a] @ Z[b].T).astype(np.float64)
            C[b, a] = C[a, b].T
    for a in range(S):
        for b in range(S):
            if a != b:
                exact_base_layers[a, b] = np.stack([(C[a, b][:, layer(m)] @ R[b][m].T / np.sqrt(rot_var[b][m])).max(1) for m in range(L)])
    mean_corr = [np.mean([C[a, b].max(1) for b in range(S) if b != a], axis=0) for a in range(S)]
    mean_base = [np.mean([exact_base_layers[a, b].max(0) for b in range(S) if b != a], axis=0) for a in range(S)]
    flags = [(mean_corr[a] - mean_base[a]) > args.threshold for a in range(S)]
    full = sum(2 * N * N * T for a in range(S) for b in range(a + 1, S))
    print(f'{S} seeds, {L} layers × d_mlp {d}, T = {T:,} tokens; full computation {full / 1e12:.2f} TFLOP; '
          f'universal (threshold {args.threshold}): {[int(f.sum()) for f in flags]}')

    for config in args.configs:
        k, K = map(int, config.split(':'))
        flops = {}
        # 1. basis: union of per-(seed, layer) top-k directions, compressed to K' (two passes: Gram, then project).
        rows = []
        for s in range(S):
            for m in range(L):
                w, V = np.linalg.eigh(G[s][m])
                rows.append(V[:, ::-1][:, :k].T @ Z[s][layer(m)])
        Y = np.vstack(rows).astype(np.float64)
        K0 = len(Y)
        ev, U = np.linalg.eigh(Y @ Y.T)
        ev, U = ev[::-1][:K], U[:, ::-1][:, :K]
        Q = ((U.T @ Y) / np.sqrt(ev)[:, None]).astype(np.float32)
        flops['basis rows (both passes)'] = 2 * 2 * S * N * k * T
        flops['basis Gram + compression'] = 2 * K0 * K0 * T + 2 * K0 * K * T
        # 2. projections, once per seed
        P = [(Z[s] @ Q.T).astype(np.float64) for s in range(S)]
        rho = [np.sqrt(np.maximum(0, 1 - (p ** 2).sum(1))) for p in P]
        flops['projections'] = 2 * S * N * K * T
        # 3. partners
        cand_count, pair_ub = 0, 0
        for a in range(S):
            for b in range(a + 1, S):
                approx = P[a] @ P[b].T
                slack = np.outer(rho[a], rho[b])
                ub, lb = approx + slack, approx - slack
                assert (C[a, b] <= ub + 1e-5).all() and (C[a, b] >= lb - 1e-5).all()
                cand = (ub >= lb.max(1)[:, None]) | (ub >= lb.max(0)[None, :])
                # the exact max of every row and column lies among its candidates
                masked = np.where(cand, C[a, b], -np.inf)
                assert (masked.argmax(1) == C[a, b].argmax(1)).all() and (masked.argmax(0) == C[a, b].argmax(0)).all()
                cand_count += cand.sum()
                pair_ub += 2 * N * N * (K + 1)
        flops['UB matrices'] = pair_ub
        flops['exact candidate dots'] = 2 * T * cand_count
        # 4. baseline intervals per layer, both directions of every pair
        lo, hi = {}, {}
        base_flops = 0
        for a in range(S):
            for b in range(S):
                if a == b:
                    continue
                los, his = [], []
                for m in range(L):
                    Pm = P[b][layer(m)]
                    resid = G[b][m] - Pm @ Pm.T
                    r_norm = np.sqrt(np.maximum(0, np.einsum('ij,jk,ik->i', R[b][m], resid, R[b][m])))
                    top = P[a] @ (R[b][m] @ Pm).T
                    s = np.sqrt(rot_var[b][m])
                    his.append(((top + np.outer(rho[a], r_norm)) / s).max(1))
                    los.append(((top - np.outer(rho[a], r_norm)) / s).max(1))
                    base_flops += 2 * d * d * K + 2 * N * d * K + 2 * d * d * d
                lo[a, b], hi[a, b] = np.stack(los), np.stack(his)
                assert (exact_base_layers[a, b] <= hi[a, b] + 1e-5).all() and (exact_base_layers[a, b] >= lo[a, b] - 1e-5).all()
        flops['baseline intervals'] = base_flops
        # 5. flags: proven where the interval allows, else refine the layers that can hold the max
        refined_layers, undecided_total, final_flags = 0, 0, []
        for a in range(S):
            others = [b for b in range(S) if b != a]
            base_lo = np.mean([lo[a, b].max(0) for b in others], axis=0)
            base_hi = np.mean([hi[a, b].max(0) for b in others], axis=0)
            yes = mean_corr[a] - base_hi > args.threshold
            no = mean_corr[a] - base_lo <= args.threshold
            undecided = ~(yes | no)
            undecided_total += undecided.sum()
            exact = np.empty(N)
            for i in np.flatnonzero(undecided):
                # Refine one other seed at a time, the widest interval first, until the flag is proven; within a
                # seed only the layers whose hi reaches the best lo can hold the max.
                seed_lo = {b: lo[a, b][:, i].max() for b in others}
                seed_hi = {b: hi[a, b][:, i].max() for b in others}
                for b in sorted(others, key=lambda b: seed_lo[b] - seed_hi[b]):
                    needed = [m for m in range(L) if hi[a, b][m, i] >= seed_lo[b]]
                    refined_layers += len(needed)
                    seed_lo[b] = seed_hi[b] = max(exact_base_layers[a, b][m, i] for m in needed)
                    lo_mean, hi_mean = np.mean(list(seed_lo.values())), np.mean(list(seed_hi.values()))
                    if mean_corr[a][i] - hi_mean > args.threshold or mean_corr[a][i] - lo_mean <= args.threshold:
                        break
                # Exact where refined, else the lower bound: on the side of the threshold the loop proved.
                exact[i] = np.mean(list(seed_lo.values()))
            flag = yes.copy()
            flag[undecided] = (mean_corr[a] - exact)[undecided] > args.threshold
            assert (flag == flags[a]).all(), 'screened flags differ from the full computation'
            final_flags.append(int(flag.sum()))
        flops['baseline refinement'] = refined_layers * 2 * d * T
        total = sum(flops.values())
        print(f"\nk = {k} per (seed, layer), K0 = {K0} → K' = {K}: basis keeps {ev.sum() / np.trace(Y @ Y.T):.4f} of the union's energy, "
              f'median residual ρ {np.median(np.concatenate(rho)):.3f}')
        print(f'  candidates per neuron per pair {cand_count / (N * S * (S - 1) / 2):.1f}; undecided flags {undecided_total} of {S * N} '
              f'({refined_layers} layer rows refined); flags {final_flags} = full computation')
        for name, f in flops.items():
            print(f'  {name:28s} {f / 1e12:8.3f} TFLOP  {100 * f / full:5.2f}% of full')
        print(f'  total {total / 1e12:.3f} TFLOP: {full / total:.1f}× fewer FLOPs than the full computation')


if __name__ == '__main__':
    main()
