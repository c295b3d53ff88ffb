#!/usr/bin/env python3
"""Extend fixtures/ab_vectors.json with reference cases from scipy, statsmodels
and GrowthBook's gbstats.

    pip install --break-system-packages scipy statsmodels gbstats numpy pandas
    python3 scripts/make_ab_vectors.py
    GBSTATS_UPSTREAM=/path/to/upstream python3 scripts/make_ab_vectors.py   # also (re)computes the
        # cuped_ps case and growthbook_power from an unreleased GrowthBook snapshot (see section 2);
        # without it the values already in the JSON for those are kept unchanged

The file's existing cases are kept as they are; the cases this script produces
(listed by id in OWN_IDS after a run) are replaced in place or appended, so the
script can be re-run. Every random sample comes from a seeded
numpy.random.default_rng, so the output is deterministic for fixed library
versions.

Conventions (see "conventions" in the JSON): control is the first arm,
abs_diff = variant - control, p-values two-sided unless a case says otherwise,
upper tails with sf (never 1 - cdf).
"""

import importlib.metadata
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import scipy
import scipy.stats as st
import statsmodels
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.power import NormalIndPower
from statsmodels.stats.proportion import proportion_effectsize, test_proportions_2indep

from gbstats.frequentist.tests import (
    FrequentistConfig,
    SequentialConfig,
    SequentialTwoSidedTTest,
    TwoSidedTTest,
)
from gbstats.models.statistics import ProportionStatistic, RatioStatistic, SampleMeanStatistic

ROOT = Path(__file__).resolve().parent.parent
FIXTURE = ROOT / "fixtures" / "ab_vectors.json"
GBSTATS_VERSION = importlib.metadata.version("gbstats")
ALPHA = 0.05

SUMMARY = []  # printed at the end
DISAGREEMENTS = []  # gbstats vs statsmodels/scipy/hand cross-checks beyond 1e-9 relative


def f(x):
    """Plain, finite Python float (the JSON must carry no NaN or infinity)."""
    x = float(x)
    if not math.isfinite(x):
        raise ValueError(f"non-finite value {x}")
    return x


def check(what, a, b, rel=1e-9, abs_=1e-12):
    """Cross-check two ways of getting one number; record disagreements."""
    a, b = float(a), float(b)
    ok = abs(a - b) <= max(abs_, rel * max(abs(a), abs(b)))
    if not ok:
        DISAGREEMENTS.append(f"{what}: {a!r} vs {b!r}")
    return ok


# ---------------------------------------------------------------------------
# 1. GrowthBook sequential (asymptotic two-sided confidence sequence)
# ---------------------------------------------------------------------------

SEQ_NOTE = (
    "gbstats 0.8.0 SequentialTwoSidedTTest (gbstats/frequentist/tests.py). "
    "Variance: TTest.variance = frequentist_variance(...): absolute Var = var_b/n_b + var_a/n_a; "
    "relative (delta method, means are the unadjusted arm means) Var = var_b/(mean_a^2 n_b) + "
    "var_a mean_b^2/(mean_a^4 n_a). Per-arm var: ProportionStatistic uses p(1-p) (no n-1 "
    "correction); SampleMeanStatistic uses (sum_squares - sum^2/n)/(n-1). "
    "N = n_a + n_b; s2 = Var * N; rho = sqrt((-2 ln alpha + ln(-2 ln alpha + 1)) / N*); "
    "halfwidth = sqrt(s2) * sqrt(2 (N rho^2 + 1) ln(sqrt(N rho^2 + 1)/alpha) / (N rho)^2); "
    "ci = estimate -+ halfwidth; p = min(1, 1/E), E = exp(rho^2 st2 / (2 (N rho^2 + 1))) / "
    "sqrt(N rho^2 + 1), st2 = (estimate - test_value)^2 N / Var. Relative estimate = "
    "(mean_b - mean_a)/mean_a. fixed_horizon_* is gbstats TwoSidedTTest (Welch t, Satterthwaite "
    "dof from the per-arm variances even for the relative estimate); its p_value here is "
    "2*scipy.stats.t.sf(|t|, dof), gbstats itself returns 2*(1 - t.cdf(|t|, dof)) which is kept "
    "as p_value_gbstats_1_minus_cdf."
)


def gb_stat(kind, arm):
    if kind == "proportion":
        return ProportionStatistic(n=arm["n"], sum=arm["sum"])
    return SampleMeanStatistic(n=arm["n"], sum=arm["sum"], sum_squares=arm["sum_squares"])


def seq_hand(est, var, n_total, nstar, alpha):
    """Independent re-computation of the gbstats formulas (cross-check only)."""
    rho2 = (-2 * math.log(alpha) + math.log(-2 * math.log(alpha) + 1)) / nstar
    s2 = var * n_total
    a = n_total * rho2 + 1
    half = math.sqrt(s2) * math.sqrt(2 * a * math.log(math.sqrt(a) / alpha) / (n_total**2 * rho2))
    st2 = est**2 * n_total / var
    e = math.exp(rho2 * st2 / (2 * a)) / math.sqrt(a)
    return math.sqrt(rho2), half, min(1.0, 1 / e)


def sequential_cases():
    inputs = [
        (
            "seq_prop_1000_100_vs_1000_130",
            "proportion",
            "binomial: 100/1000 vs 130/1000",
            [("control", 1000, 100), ("variant_b", 1000, 130)],
        ),
        (
            "seq_prop_20000_2000_vs_20000_2100",
            "proportion",
            "binomial: 2000/20000 vs 2100/20000",
            [("control", 20000, 2000), ("variant_b", 20000, 2100)],
        ),
        (
            "seq_mean_25_vs_30",
            "sample_mean",
            "per-user mean: n=25 mean 12 var 16 vs n=30 mean 14.5 var 36 (same arms as revenue_per_user_small)",
            [("control", 25, 12.0, 16.0), ("variant_b", 30, 14.5, 36.0)],
        ),
    ]
    cases = []
    for base_id, kind, desc, arms_spec in inputs:
        arms = []
        for spec in arms_spec:
            if kind == "proportion":
                name, n, x = spec
                arms.append({"name": name, "n": n, "sum": x, "sum_squares": x})
            else:
                name, n, mean, var = spec
                s = mean * n
                ss = var * (n - 1) + s * s / n
                arms.append({"name": name, "n": n, "sum": f(s), "sum_squares": f(ss), "mean": mean, "variance": var})
        for nstar in (5000, 20000):
            exp = {
                "computed_with": [
                    f"gbstats {GBSTATS_VERSION}: gbstats.frequentist.tests.SequentialTwoSidedTTest(...).compute_result()",
                    "gbstats.frequentist.tests.SequentialConfig(difference_type='absolute'|'relative', alpha, sequential_tuning_parameter)",
                    "gbstats.frequentist.tests.TwoSidedTTest (fixed_horizon_*)",
                    "gbstats.models.statistics.ProportionStatistic / SampleMeanStatistic",
                    "scipy.stats.t.sf",
                ],
                "n_total": arms[0]["n"] + arms[1]["n"],
                "arms": [],
            }
            a, b = gb_stat(kind, arms[0]), gb_stat(kind, arms[1])
            exp["arms"] = [
                {"name": arms[i]["name"], "mean": f(s.mean), "variance": f(s.variance)} for i, s in enumerate((a, b))
            ]
            for dt in ("absolute", "relative"):
                t = SequentialTwoSidedTTest(
                    gb_stat(kind, arms[0]),
                    gb_stat(kind, arms[1]),
                    SequentialConfig(difference_type=dt, alpha=ALPHA, sequential_tuning_parameter=nstar),
                )
                r = t.compute_result()
                assert r.error_message is None, r.error_message
                lo, hi = r.ci
                half = (hi - lo) / 2
                exp["rho"] = f(t.rho)
                exp[dt] = {
                    "point_estimate": f(r.expected),
                    "variance": f(t.variance),
                    "std_error": f(math.sqrt(t.variance)),
                    "halfwidth": f(half),
                    "ci": [f(lo), f(hi)],
                    "p_value": f(r.p_value),
                }
                rho_h, half_h, p_h = seq_hand(r.expected, t.variance, exp["n_total"], nstar, ALPHA)
                cid = f"{base_id}_nstar{nstar}"
                check(f"{cid} {dt} rho (gbstats vs hand)", t.rho, rho_h)
                check(f"{cid} {dt} halfwidth (gbstats vs hand)", half, half_h, rel=1e-12)
                check(f"{cid} {dt} p (gbstats vs hand)", r.p_value, p_h, rel=1e-12)

                ft = TwoSidedTTest(gb_stat(kind, arms[0]), gb_stat(kind, arms[1]), FrequentistConfig(difference_type=dt, alpha=ALPHA))
                fr = ft.compute_result()
                tstat = ft.critical_value
                p_sf = 2 * st.t.sf(abs(tstat), ft.dof)
                check(f"{cid} fixed {dt} p (sf vs gbstats 1-cdf)", p_sf, fr.p_value, rel=1e-6, abs_=1e-10)
                exp[f"fixed_horizon_{dt}"] = {
                    "point_estimate": f(fr.expected),
                    "std_error": f(math.sqrt(ft.variance)),
                    "welch_dof": f(ft.dof),
                    "t_stat": f(tstat),
                    "ci": [f(fr.ci[0]), f(fr.ci[1])],
                    "p_value": f(p_sf),
                    "p_value_gbstats_1_minus_cdf": f(fr.p_value),
                }
            cases.append(
                {
                    "id": f"{base_id}_nstar{nstar}",
                    "kind": "sequential",
                    "description": f"GrowthBook sequential (confidence sequence), {desc}, N* = {nstar}",
                    "input": {
                        "statistic": kind,
                        "arms": arms,
                        "control": "control",
                        "sequential_tuning_parameter": nstar,
                        "alpha": ALPHA,
                        "test_value": 0.0,
                    },
                    "expected": exp,
                    "note": SEQ_NOTE,
                }
            )
            SUMMARY.append(
                f"{cases[-1]['id']}: abs {exp['absolute']['point_estimate']:.6g} "
                f"ci [{exp['absolute']['ci'][0]:.6g}, {exp['absolute']['ci'][1]:.6g}] p {exp['absolute']['p_value']:.6g}; "
                f"rel p {exp['relative']['p_value']:.6g}"
            )
    return cases


# ---------------------------------------------------------------------------
# 2. CUPEDps (post-stratification) -- upstream gbstats (GitHub), not the installed one
# ---------------------------------------------------------------------------
#
# The released gbstats on PyPI has no post-stratification and no planning power
# calculator, so these come from an unreleased upstream snapshot of
# github.com/growthbook/growthbook, laid out as in that repository:
#
#   $GBSTATS_UPSTREAM/UPSTREAM_COMMIT                      the snapshot's commit (40 hex digits)
#   $GBSTATS_UPSTREAM/packages/stats/gbstats/...           upstream Python package (post-stratification)
#   $GBSTATS_UPSTREAM/packages/shared/src/power/power.ts   upstream power calculator (TypeScript)
#   $GBSTATS_UPSTREAM/node_modules/{typescript,@stdlib/stats}   npm install typescript@5.7.3 @stdlib/stats@0.1.1
#
# e.g. from a clone at commit C:
#   git archive C packages/stats/gbstats packages/shared/src/power/power.ts | tar -x -C "$GBSTATS_UPSTREAM"
#   echo C > "$GBSTATS_UPSTREAM/UPSTREAM_COMMIT"
#   (cd "$GBSTATS_UPSTREAM" && npm install typescript@5.7.3 @stdlib/stats@0.1.1)
#
# Nothing of upstream is re-implemented here: the upstream Python code runs in a
# subprocess (its package is also called gbstats and would clash with the
# installed 0.8.0 used by the other cases) and power.ts runs under node. Without
# GBSTATS_UPSTREAM the values already in the JSON are kept as they are.

GBSTATS_UPSTREAM = os.environ.get("GBSTATS_UPSTREAM") or None
UPSTREAM_REPO = "github.com/growthbook/growthbook"


def upstream_commit():
    root = Path(GBSTATS_UPSTREAM)
    p = root / "UPSTREAM_COMMIT"
    if p.exists():
        commit = p.read_text().strip()
    else:
        commit = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"], check=True, capture_output=True, text=True
        ).stdout.strip()
    if len(commit) != 40 or any(ch not in "0123456789abcdef" for ch in commit):
        raise SystemExit(f"GBSTATS_UPSTREAM: cannot tell the upstream commit ({commit!r}); write it to UPSTREAM_COMMIT")
    return commit


# Runs with PYTHONPATH=$GBSTATS_UPSTREAM/packages/stats; reads the strata on stdin, prints JSON.
UPSTREAM_PS_CODE = r'''
import json, sys
import numpy as np
import gbstats
from gbstats.models.statistics import RegressionAdjustedStatistic, SampleMeanStatistic, compute_theta
from gbstats.models.tests import CreateStrataResultRegressionAdjusted, EffectMomentsPostStratification, sum_stats
from gbstats.frequentist.tests import FrequentistConfig, TwoSidedTTest
from gbstats.utils import invert_symmetric_matrix

inp = json.load(sys.stdin)
assert gbstats.__file__.startswith(inp["root"]), gbstats.__file__


def ra(a):
    return RegressionAdjustedStatistic(
        n=a["n"],
        post_statistic=SampleMeanStatistic(n=a["n"], sum=a["sum_y"], sum_squares=a["sum_y2"]),
        pre_statistic=SampleMeanStatistic(n=a["n"], sum=a["sum_x"], sum_squares=a["sum_x2"]),
        post_pre_sum_of_products=a["sum_xy"],
        theta=None,
    )


stats = []
for s in inp["strata"]:
    arms = {a["name"]: a for a in s["arms"]}
    stats.append((ra(arms[inp["control"]]), ra(arms[inp["treatment"]])))

out = {"gbstats_file": gbstats.__file__, "strata": [], "tests": {}}
n_total = sum(a.n + b.n for a, b in stats)
for s, (a, b) in zip(inp["strata"], stats):
    c = CreateStrataResultRegressionAdjusted(a, b)
    r = c.compute_result()
    assert r.error_message is None, r.error_message
    xty = np.array([a.post_statistic.sum + b.post_statistic.sum, b.post_statistic.sum,
                    a.post_pre_sum_of_products + b.post_pre_sum_of_products])
    coefs = invert_symmetric_matrix(c.xtx).inverse.dot(xty)
    out["strata"].append({
        "name": s["name"], "n": r.n, "nu": r.n / n_total,
        "regression_coefs": [float(v) for v in coefs],
        "pre_mean": float(c.baseline_mean), "pre_variance": float(c.baseline_variance),
        "effect": float(r.effect), "control_mean": float(r.control_mean),
        "effect_cov": float(r.effect_cov), "control_mean_cov": float(r.control_mean_cov),
        "effect_control_mean_cov": float(r.effect_control_mean_cov),
    })
pa, pb = sum_stats(stats)
out["pooled_theta"] = float(compute_theta(pa, pb))
for dt in ("absolute", "relative"):
    for ps in (True, False):
        t = TwoSidedTTest(stats, FrequentistConfig(difference_type=dt, alpha=inp["alpha"], post_stratify=ps))
        r = t.compute_result()
        assert r.errorMessage is None, r.errorMessage
        m = t.moments_result
        assert m.post_stratification_applied == ps
        out["tests"][f"{dt}_{'ps' if ps else 'unstratified'}"] = {
            "point_estimate": float(m.point_estimate), "standard_error": float(m.standard_error),
            "pairwise_sample_size": int(m.pairwise_sample_size), "dof": float(t.dof),
            "t_stat": float(t.critical_value), "expected": float(r.expected),
            "ci": [float(r.ci[0]), float(r.ci[1])], "p_value": float(r.pValue),
            "post_stratification_applied": bool(t.realized_settings.postStratificationApplied),
        }
json.dump(out, sys.stdout)
'''


def run_upstream_post_strat(inp):
    root = str(Path(GBSTATS_UPSTREAM).resolve())
    pkg = str(Path(root) / "packages" / "stats")
    env = dict(os.environ)
    env["PYTHONPATH"] = pkg + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    with tempfile.TemporaryDirectory() as tmp:
        r = subprocess.run(
            [sys.executable, "-c", UPSTREAM_PS_CODE],
            input=json.dumps(dict(inp, root=pkg)),
            capture_output=True, text=True, env=env, cwd=tmp,
        )
    if r.returncode != 0:
        raise SystemExit(f"upstream gbstats post-stratification failed:\n{r.stderr}")
    return json.loads(r.stdout)


def cuped_ps_hand(raw, alpha_relative):
    """Independent numpy re-computation from the unit-level data (cross-check only):
    per stratum OLS y ~ 1 + treatment + x, cell moments, multinomial combination, delta method."""
    n_total = sum(len(xc) + len(xt) for xc, _, xt, _ in raw)
    alphas, sigmas, nus = [], [], []
    for xc, yc, xt, yt in raw:
        x = np.concatenate([xc, xt])
        y = np.concatenate([yc, yt])
        w = np.concatenate([np.zeros(len(xc)), np.ones(len(xt))])
        n = len(x)
        X = np.column_stack([np.ones(n), w, x])
        xtx_inv = np.linalg.inv(X.T @ X)
        g = xtx_inv @ X.T @ y
        resid = y - X @ g
        c = (resid @ resid) / (n - 3) * xtx_inv
        m0 = np.array([1.0, 0.0, x.mean()])
        m1 = np.array([0.0, 1.0, 0.0])
        sx2 = x.var(ddof=1)
        var_mu = m0 @ c @ m0 + (c[2, 2] + g[2] ** 2) * sx2 / n
        sigma = n * np.array([[var_mu, m0 @ c @ m1], [m0 @ c @ m1, c[1, 1]]])
        alphas.append([m0 @ g, g[1]])
        sigmas.append(sigma)
        nus.append(n / n_total)
    A = np.array(alphas).T  # 2 x K
    nu = np.array(nus)
    mean = A @ nu
    cov = A @ (np.diag(nu) - np.outer(nu, nu)) @ A.T / n_total + sum(v * s for v, s in zip(nu, sigmas)) / n_total
    if alpha_relative:
        grad = np.array([-mean[1] / mean[0] ** 2, 1 / mean[0]])
        return mean[1] / abs(mean[0]), float(grad @ cov @ grad)
    return mean[1], float(cov[1, 1])


PS_NOTE = (
    "Upstream gbstats (GitHub growthbook/growthbook packages/stats/gbstats/models/tests.py, unreleased; the file "
    "post_strat.py does not exist) TwoSidedTTest(stats, FrequentistConfig(post_stratify=True)) -> "
    "EffectMomentsPostStratification. Per stratum k (both arms pooled), OLS y = g0 + g1*treatment + g2*x with its own "
    "slope g2 (theta per stratum, shared by both arms; CreateStrataResultRegressionAdjusted, X'X and X'y from the "
    "sums); sigma2 = (sum y^2 - X'y' (X'X)^-1 X'y)/(n_k - 3); Cov(g) = sigma2 (X'X)^-1. Cell moments alpha_k = "
    "(control mean mu_k = g0 + g2 * xbar_k, effect d_k = g1), xbar_k = pre-metric mean over both arms of the stratum; "
    "Sigma_k = n_k * Cov, with Var(mu_k) = m0'Cov(g)m0 + (Cov(g)[2,2] + g2^2) s2_xk/n_k (s2_xk pooled pre variance, n-1), "
    "Cov(mu_k, d_k) = m0'Cov(g)m1, Var(d_k) = Cov(g)[1,1]. Weights nu_k = n_k/N, n_k = control + treatment units of the "
    "stratum. Combined alpha = sum_k nu_k alpha_k; Cov = A (diag(nu) - nu nu')/N A' + sum_k nu_k Sigma_k / N "
    "(multinomial term + within-stratum term; for the absolute effect sum_k nu_k^2 Var(d_k) + sum_k nu_k (d_k - d)^2 / N). "
    "absolute = alpha[1], Var = Cov[1,1]; relative = alpha[1]/|alpha[0]| (alpha[0] = post-stratified adjusted control "
    "mean, not the raw control mean), Var by the delta method with gradient (-alpha[1]/alpha[0]^2, 1/alpha[0]). "
    "Cells are analysed separately only when both arms have variance > 0 (others are merged into the largest cell); "
    "no other minimum stratum size for count/mean CUPED (ratio CUPED needs n_k > 6). Inference uses Student t with the "
    "Welch dof of the UNSTRATIFIED pooled CUPED statistics (one pooled theta): ci = est -+ t.ppf(1-alpha/2, dof) se; "
    "p_value here = 2 t.sf(|est/se|, dof), gbstats itself returns 2 (1 - t.cdf) (kept as p_value_gbstats_1_minus_cdf; "
    "at p ~ 1e-14 that loses digits). *_z fields use the normal instead. unstratified_cuped_* = the same test with "
    "post_stratify=False (ordinary CUPED, pooled theta = Cov(x,y)/Var(x) over all units of both arms), for information."
)


def cuped_ps_case(old):
    rng = np.random.default_rng(11)
    strata_spec = [("BR", 400, 410, 8.0), ("IN", 700, 690, 4.0), ("MX", 250, 260, 12.0)]
    strata = []
    raw = []
    for name, n_c, n_t, base in strata_spec:
        arms = []
        cell = []
        for arm, n, lift in (("control", n_c, 0.0), ("treatment", n_t, 0.6)):
            x = np.round(rng.gamma(2.0, base / 2.0, n), 2)
            y = np.round(1.0 + 0.8 * x + rng.normal(0.0, base / 3.0, n) + lift, 2)
            cell += [x, y]
            arms.append(
                {
                    "name": arm,
                    "n": n,
                    "sum_y": f(y.sum()),
                    "sum_y2": f((y * y).sum()),
                    "sum_x": f(x.sum()),
                    "sum_x2": f((x * x).sum()),
                    "sum_xy": f((x * y).sum()),
                }
            )
        strata.append({"name": name, "arms": arms})
        raw.append(tuple(cell))
    case = {
        "id": "cuped_ps_three_countries",
        "kind": "cuped_ps",
        "description": "CUPED with post-stratification by country (3 strata), x = pre-period metric",
        "skipped": True,
        "input": {
            "strata": strata,
            "control": "control",
            "alpha": ALPHA,
            "generator": {
                "numpy_default_rng_seed": 11,
                "model": "per stratum and arm in order BR, IN, MX / control, treatment: x = gamma(2, base/2, n); y = 1 + 0.8 x + normal(0, base/3, n) + lift (treatment lift 0.6); bases 8, 4, 12",
                "note": "values rounded to 0.01 before summing",
            },
        },
        "expected": None,
    }
    prev = old.get(case["id"])
    if GBSTATS_UPSTREAM:
        commit = upstream_commit()
        up = run_upstream_post_strat({"strata": strata, "control": "control", "treatment": "treatment", "alpha": ALPHA})
        exp = {
            "computed_with": [
                f"{UPSTREAM_REPO} @ {commit}: packages/stats/gbstats/frequentist/tests.py TwoSidedTTest(stats, "
                "FrequentistConfig(difference_type='absolute'|'relative', alpha=0.05, post_stratify=True)).compute_result()",
                f"{UPSTREAM_REPO} @ {commit}: packages/stats/gbstats/models/tests.py EffectMomentsPostStratification, "
                "CreateStrataResultRegressionAdjusted, PostStratificationSummary",
                "gbstats.models.statistics.RegressionAdjustedStatistic(n, post_statistic=SampleMeanStatistic(n, sum_y, sum_y2), "
                "pre_statistic=SampleMeanStatistic(n, sum_x, sum_x2), post_pre_sum_of_products=sum_xy, theta=None), "
                "one (control, treatment) pair per stratum",
                "scipy.stats.t.sf, scipy.stats.norm.sf/isf",
            ],
            "upstream": {
                "repository": UPSTREAM_REPO,
                "commit": commit,
                "files": [
                    "packages/stats/gbstats/models/tests.py",
                    "packages/stats/gbstats/frequentist/tests.py",
                    "packages/stats/gbstats/models/statistics.py",
                    "packages/stats/gbstats/utils.py",
                ],
                "docs": "docs/statistics/post-stratification.mdx",
                "gbstats_version_string": "0.8.0 (upstream pyproject, unreleased code)",
            },
            "n_total": up["tests"]["absolute_ps"]["pairwise_sample_size"],
            "strata": up["strata"],
            "pooled_theta_unstratified": f(up["pooled_theta"]),
        }
        z = st.norm.isf(ALPHA / 2)
        for dt in ("absolute", "relative"):
            u = up["tests"][f"{dt}_ps"]
            est, se, dof = u["point_estimate"], u["standard_error"], u["dof"]
            tstat = est / se
            check(f"cuped_ps {dt} t_stat", tstat, u["t_stat"], rel=1e-12)
            check(f"cuped_ps {dt} expected == point estimate", u["expected"], est, rel=0.0, abs_=0.0)
            p_sf = 2 * st.t.sf(abs(tstat), dof)
            check(f"cuped_ps {dt} p (sf vs gbstats 1-cdf)", p_sf, u["p_value"], rel=1e-2, abs_=1e-12)
            he, hv = cuped_ps_hand(raw, dt == "relative")
            check(f"cuped_ps {dt} estimate (upstream vs numpy OLS by hand)", est, he, rel=1e-9)
            check(f"cuped_ps {dt} variance (upstream vs numpy OLS by hand)", se * se, hv, rel=1e-9)
            exp[dt] = {
                "point_estimate": f(est),
                "variance": f(se * se),
                "std_error": f(se),
                "welch_dof": f(dof),
                "t_stat": f(tstat),
                "ci": [f(u["ci"][0]), f(u["ci"][1])],
                "p_value": f(p_sf),
                "p_value_gbstats_1_minus_cdf": f(u["p_value"]),
                "ci95_z": [f(est - z * se), f(est + z * se)],
                "p_value_z": f(2 * st.norm.sf(abs(tstat))),
            }
            v = up["tests"][f"{dt}_unstratified"]
            exp[f"unstratified_cuped_{dt}"] = {
                "point_estimate": f(v["point_estimate"]),
                "std_error": f(v["standard_error"]),
                "ci": [f(v["ci"][0]), f(v["ci"][1])],
                "p_value": f(2 * st.t.sf(abs(v["point_estimate"] / v["standard_error"]), v["dof"])),
            }
        case["skipped"] = False
        case["expected"] = exp
        case["note"] = PS_NOTE
    elif prev is not None and not prev.get("skipped") and prev.get("expected") is not None:
        # GBSTATS_UPSTREAM not set: keep what an earlier run with upstream wrote
        if prev["input"] != case["input"]:
            raise SystemExit("cuped_ps_three_countries: input changed; re-run with GBSTATS_UPSTREAM set")
        case["skipped"] = False
        case["expected"] = prev["expected"]
        case["note"] = prev["note"]
    else:
        case["note"] = (
            f"SKIPPED: the installed gbstats {GBSTATS_VERSION} (the newest on PyPI when generated) has no "
            "post-stratification; upstream GitHub growthbook/growthbook packages/stats/gbstats/models/tests.py "
            "(EffectMomentsPostStratification) has it but is not released. Run with GBSTATS_UPSTREAM set to fill "
            "this case in. Do not test against this case."
        )
    if case["skipped"]:
        SUMMARY.append("cuped_ps_three_countries: SKIPPED (set GBSTATS_UPSTREAM to compute it)")
    else:
        e = case["expected"]
        SUMMARY.append(
            f"cuped_ps_three_countries: abs {e['absolute']['point_estimate']:.6g} se {e['absolute']['std_error']:.6g} "
            f"p {e['absolute']['p_value']:.4g}; rel {e['relative']['point_estimate']:.6g} se {e['relative']['std_error']:.6g}"
        )
    # key order as in the earlier placeholder: id, kind, description, skipped, input, expected, note
    return case


# ---------------------------------------------------------------------------
# 3. Power / sample size (statsmodels NormalIndPower; GrowthBook's calculator from upstream)
# ---------------------------------------------------------------------------

# node driver: transpiles upstream power.ts (typescript.transpileModule with the compiler options of upstream
# packages/shared/tsconfig.json that matter for emit: commonjs, es2020, esModuleInterop) and calls its exported
# functions. Only the root search for n is done here (bisection on powerEstFrequentist).
UPSTREAM_POWER_JS = r'''
const fs = require("fs");
const path = require("path");
const Module = require("module");
const [powerTs, nodeModules] = process.argv.slice(2);
const ts = require(path.join(nodeModules, "typescript"));
const js = ts.transpileModule(fs.readFileSync(powerTs, "utf8"), {
  compilerOptions: { module: ts.ModuleKind.CommonJS, target: ts.ScriptTarget.ES2020, esModuleInterop: true },
}).outputText;
const m = new Module(powerTs, null);
m.filename = powerTs;
m.require = (id) => {
  // ../constants supplies only DEFAULT_PROPER_PRIOR_STDDEV (0.3 upstream), a UI default for Bayesian priors
  if (id === "../constants") return { DEFAULT_PROPER_PRIOR_STDDEV: 0.3 };
  return require(require.resolve(id, { paths: [nodeModules] }));
};
m._compile(js, powerTs);
const P = m.exports;
const version = (p) => JSON.parse(fs.readFileSync(path.join(nodeModules, p, "package.json"), "utf8")).version;
const input = JSON.parse(fs.readFileSync(0, "utf8"));
const out = { typescript: version("typescript"), stdlib_stats: version("@stdlib/stats"), node: process.version, cases: [] };
for (const c of input.cases) {
  const metric = {
    type: "binomial", name: c.id, conversionRate: c.conversion_rate, effectSize: c.effect_size_relative,
    overrideMetricLevelSettings: false, overridePriorLiftMean: 0, overridePriorLiftStandardDeviation: 0.3,
    overrideProper: false, metricPriorLiftMean: 0, metricPriorLiftStandardDeviation: 0.3, metricProper: false,
  };
  const k = c.n_variations;
  const pw = (nPer) => P.powerEstFrequentist(metric, nPer * k, k, c.alpha, true, false);
  let lo = 1, hi = 2;
  while (pw(hi) < c.target_power) hi *= 2;
  for (let i = 0; i < 200; i++) {
    const mid = (lo + hi) / 2;
    if (mid === lo || mid === hi) break;
    if (pw(mid) < c.target_power) lo = mid; else hi = mid;
  }
  let nCeil = Math.ceil(hi);
  while (pw(nCeil) < c.target_power) nCeil++;
  const nAt = c.n_per_variation_for_power;
  out.cases.push({
    id: c.id,
    n_per_variation: hi,
    n_per_variation_ceil: nCeil,
    power_at_n_per_variation: pw(hi),
    standard_error_relative_at_n_per_variation: P.powerStandardError(metric, hi, true),
    mde_at_n_per_variation: P.findMdeFrequentist(metric, c.target_power, hi * k, k, c.alpha, false),
    power_at_n: pw(nAt),
    standard_error_relative_at_n: P.powerStandardError(metric, nAt, true),
    mde_at_n: P.findMdeFrequentist(metric, c.target_power, nAt * k, k, c.alpha, false),
  });
}
process.stdout.write(JSON.stringify(out));
'''


def run_upstream_power(cases_in):
    root = Path(GBSTATS_UPSTREAM).resolve()
    power_ts = root / "packages" / "shared" / "src" / "power" / "power.ts"
    node_modules = Path(os.environ.get("GBSTATS_UPSTREAM_NODE_MODULES") or root / "node_modules").resolve()
    node = shutil.which("node")
    if node is None or not power_ts.exists() or not (node_modules / "typescript").exists():
        raise SystemExit(
            f"GBSTATS_UPSTREAM: need node, {power_ts} and {node_modules}/typescript + @stdlib/stats "
            "(npm install typescript@5.7.3 @stdlib/stats@0.1.1)"
        )
    with tempfile.TemporaryDirectory() as tmp:
        driver = Path(tmp) / "gb_power_driver.js"
        driver.write_text(UPSTREAM_POWER_JS)
        r = subprocess.run(
            [node, str(driver), str(power_ts), str(node_modules)],
            input=json.dumps({"cases": cases_in}), capture_output=True, text=True, cwd=tmp,
        )
    if r.returncode != 0:
        raise SystemExit(f"upstream power.ts failed:\n{r.stderr}")
    return json.loads(r.stdout)


def gb_power_hand(p, rel, n_per, alpha):
    """Cross-check only: the formulas documented in upstream docs/statistics/power-technical.mdx."""
    v = p * (1 - p)
    se = math.sqrt(v / (n_per * p**2) + v * (p * (1 + rel)) ** 2 / (n_per * p**4))
    z = st.norm.isf(alpha / 2)
    return st.norm.sf(z - rel / se) + st.norm.cdf(-z - rel / se), se


def gb_mde_hand(p, n_per, alpha, power):
    v = p * (1 - p)
    k = st.norm.isf(alpha / 2) - st.norm.isf(power)
    s2 = v / n_per
    a = 1 - k**2 * s2 / p**2
    b = -2 * p
    c = p**2 - k**2 * s2
    return ((-b + math.sqrt(b * b - 4 * a * c)) / (2 * a) - p) / p


GB_POWER_NOTE = (
    "growthbook_power: GrowthBook's planning calculator, upstream packages/shared/src/power/power.ts (TypeScript; "
    "gbstats/power/midexperimentpower.py is only the mid-experiment variant that needs an observed standard error). "
    "It is relative-only: effect_size_relative = (p_treatment - p_control)/p_control (absolute MDEs are divided by the "
    "baseline). Variance p(1-p) at the BASELINE for both arms (metric variance; the treatment rate "
    "p_c(1+effect) enters only the delta-method mean term): se^2 = v/(N p_c^2) + v p_t^2/(N p_c^4), N = users per "
    "variation = n/nVariations (equal split; arm weights are not supported, upstream docs say to use the smallest arm). "
    "power = 1 - Phi(z_{1-alpha/2} - effect/se) + Phi(-z_{1-alpha/2} - effect/se) (two-tailed, both tails; no "
    "multiple-comparison correction for nVariations > 2). n_per_variation = root of power = 0.8 in N (bisection in "
    "this script), n_total_equal_split = nVariations * n_per_variation; n_total_smallest_arm_rule = n_per_variation / "
    "smallest weight. GrowthBook itself only evaluates whole weeks and takes the first week with round(power, 2) >= 0.8. "
    "mde_relative_* = findMdeFrequentist (closed-form quadratic that ignores the lower tail, so at n_per_variation it is "
    "slightly above effect_size_relative). power_at_n uses N = min(power_at_n n_control, n_treatment)."
)


def growthbook_power(cid, p1, p2, w, n_at_control, n_at_min, old):
    """GrowthBook's own power numbers (upstream power.ts) or, without GBSTATS_UPSTREAM, those already in the JSON."""
    if not GBSTATS_UPSTREAM:
        prev = old.get(cid)
        return prev["expected"].get("growthbook_power") if prev else None
    commit = upstream_commit()
    rel = (p2 - p1) / p1
    k = len(w)
    up = run_upstream_power(
        [
            {
                "id": cid,
                "conversion_rate": p1,
                "effect_size_relative": rel,
                "n_variations": k,
                "alpha": ALPHA,
                "target_power": 0.8,
                "n_per_variation_for_power": n_at_min,
            }
        ]
    )
    r = up["cases"][0]
    for key in ("mde_at_n_per_variation", "mde_at_n"):
        assert r[key]["type"] == "success", r[key]
    n_per = r["n_per_variation"]
    ph, seh = gb_power_hand(p1, rel, n_per, ALPHA)
    check(f"{cid} growthbook power(n_per_variation) == 0.8", r["power_at_n_per_variation"], 0.8, rel=1e-9)
    check(f"{cid} growthbook power(n_per_variation) (power.ts vs docs formula)", r["power_at_n_per_variation"], ph, rel=1e-9)
    check(f"{cid} growthbook se (power.ts vs docs formula)", r["standard_error_relative_at_n_per_variation"], seh, rel=1e-12)
    ph, seh = gb_power_hand(p1, rel, n_at_min, ALPHA)
    check(f"{cid} growthbook power at n (power.ts vs docs formula)", r["power_at_n"], ph, rel=1e-9)
    check(f"{cid} growthbook mde at n (power.ts vs docs formula)", r["mde_at_n"]["mde"], gb_mde_hand(p1, n_at_min, ALPHA, 0.8), rel=1e-9)
    return {
        "computed_with": [
            f"{UPSTREAM_REPO} @ {commit}: packages/shared/src/power/power.ts powerEstFrequentist(metric, n = nVariations * "
            "n_per_variation, nVariations, alpha, twoTailed=true, sequentialTesting=false), powerStandardError(metric, "
            "n_per_variation, relative=true), findMdeFrequentist(metric, 0.8, n, nVariations, alpha, false)",
            f"run under node {up['node']}, transpiled with typescript {up['typescript']} (transpileModule: commonjs, es2020, "
            f"esModuleInterop), normal distribution from @stdlib/stats {up['stdlib_stats']} (upstream pnpm-lock pins 0.1.1)",
            "n_per_variation: bisection on powerEstFrequentist to float precision (this script)",
        ],
        "upstream": {
            "repository": UPSTREAM_REPO,
            "commit": commit,
            "files": ["packages/shared/src/power/power.ts"],
            "docs": "docs/statistics/power-technical.mdx",
        },
        "inputs": {
            "metric": {"type": "binomial", "conversionRate": f(p1), "effectSize": f(rel)},
            "nVariations": k,
            "alpha": ALPHA,
            "twoTailed": True,
            "sequentialTesting": False,
            "target_power": 0.8,
        },
        "effect_size_relative": f(rel),
        "p_treatment_assumed": f(p1 * (1 + rel)),
        "variance_per_arm": f(p1 * (1 - p1)),
        "n_per_variation": f(n_per),
        "n_per_variation_ceil": r["n_per_variation_ceil"],
        "n_total_equal_split": f(n_per * k),
        "n_total_smallest_arm_rule": f(n_per / min(w)),
        "standard_error_relative_at_n_per_variation": f(r["standard_error_relative_at_n_per_variation"]),
        "mde_relative_at_n_per_variation": f(r["mde_at_n_per_variation"]["mde"]),
        "power_at_n": {
            "n_per_variation": f(n_at_min),
            "power": f(r["power_at_n"]),
            "standard_error_relative": f(r["standard_error_relative_at_n"]),
            "mde_relative": f(r["mde_at_n"]["mde"]),
        },
    }


def power_cases(old):
    specs = [
        ("power_p010_mde001_abs", 0.10, 0.01, "absolute", [50, 50]),
        ("power_p010_mde10pct_rel", 0.10, 0.10, "relative", [50, 50]),
        ("power_p003_mde0005_abs_3arm_50_25_25", 0.03, 0.005, "absolute", [50, 25, 25]),
    ]
    nip = NormalIndPower()
    cases = []
    z_a = st.norm.isf(ALPHA / 2)
    z_b = st.norm.isf(1 - 0.8)
    for cid, p1, mde, mde_type, weights in specs:
        p2 = p1 + mde if mde_type == "absolute" else p1 * (1 + mde)
        w = [x / sum(weights) for x in weights]
        ratio = min(w[1:]) / w[0]  # smallest treatment arm vs control
        n_at = 5000
        h = proportion_effectsize(p2, p1)
        sd_unpooled = math.sqrt((p1 * (1 - p1) + p2 * (1 - p2)) / 2)
        sd_base = math.sqrt(p1 * (1 - p1))
        d_unpooled = (p2 - p1) / sd_unpooled
        d_base = (p2 - p1) / sd_base
        exp = {
            "computed_with": [
                "statsmodels.stats.proportion.proportion_effectsize(p_treatment, p_control)",
                "statsmodels.stats.power.NormalIndPower().solve_power(effect_size, alpha=0.05, power=0.8, ratio, alternative='two-sided')",
                "statsmodels.stats.power.NormalIndPower().power(effect_size, nobs1, alpha=0.05, ratio, alternative='two-sided')",
            ],
            "p_control": f(p1),
            "p_treatment": f(p2),
            "mde_absolute": f(p2 - p1),
            "weights_normalized": [f(x) for x in w],
            "ratio_treatment_to_control": f(ratio),
        }
        for label, es in (("cohens_h", h), ("unpooled", d_unpooled), ("baseline_sd", d_base)):
            n1 = nip.solve_power(effect_size=es, alpha=ALPHA, power=0.8, ratio=ratio, alternative="two-sided")
            n2 = n1 * ratio
            exp[f"effect_size_{label}"] = f(es)
            if len(weights) == 2:
                exp[f"n_per_arm_{label}"] = f(n1)
                exp[f"n_per_arm_{label}_ceil"] = math.ceil(n1)
            exp[f"n_control_{label}"] = f(n1)
            exp[f"n_treatment_{label}"] = f(n2)
            exp[f"n_total_{label}"] = f(n1 / w[0])
            exp[f"power_at_n_{label}"] = f(
                nip.power(effect_size=es, nobs1=n_at, alpha=ALPHA, ratio=ratio, alternative="two-sided")
            )
            # cross-checks: power at the solved n is 0.8; closed form (upper tail only) is close
            check(f"{cid} {label} power(solved n) == 0.8", nip.power(es, n1, ALPHA, ratio=ratio), 0.8, rel=1e-8)
            closed = (z_a + z_b) ** 2 / es**2 * (1 + 1 / ratio)
            exp.setdefault("informational_closed_form_upper_tail_only", {})[f"n_control_{label}"] = f(closed)
            check(f"{cid} {label} n (statsmodels vs closed form)", n1, closed, rel=1e-3)
        exp["growthbook_power"] = growthbook_power(cid, p1, p2, w, n_at, min(n_at, n_at * ratio), old)
        exp["power_at_n_input"] = {"n_control": n_at, "n_treatment": f(n_at * ratio)}
        cases.append(
            {
                "id": cid,
                "kind": "power",
                "description": f"sample size per arm and power: baseline {p1}, MDE {mde} {mde_type}, weights {weights}",
                "input": {
                    "baseline": p1,
                    "mde": mde,
                    "mde_type": mde_type,
                    "weights": weights,
                    "comparison": "smallest treatment arm vs control" if len(weights) > 2 else "treatment vs control",
                    "alpha": ALPHA,
                    "power": 0.8,
                    "alternative": "two-sided",
                    "power_at_n": {"n_control": n_at, "n_treatment": f(n_at * ratio)},
                },
                "expected": exp,
                "note": (
                    "p_treatment = baseline + mde (absolute) or baseline*(1+mde) (relative). "
                    "effect_size_cohens_h = 2 asin(sqrt(p_t)) - 2 asin(sqrt(p_c)); "
                    "effect_size_unpooled = (p_t - p_c)/sqrt((p_c(1-p_c) + p_t(1-p_t))/2); "
                    "effect_size_baseline_sd = (p_t - p_c)/sqrt(p_c(1-p_c)). "
                    "statsmodels NormalIndPower: nobs1 = control n, nobs2 = ratio*nobs1, effective n = 1/(1/nobs1 + 1/nobs2), "
                    "power = norm.sf(z_{1-alpha/2} - d sqrt(n_eff)) + norm.cdf(-z_{1-alpha/2} - d sqrt(n_eff)) (both tails); "
                    "solve_power is a root finder (compare n with rel 1e-6). It assumes one common sd for both arms, so "
                    "with unequal arms the 'unpooled' effect size is an approximation. n_total = n_control / control weight. "
                    "n values are not rounded; *_ceil is the integer to plan with. "
                    "informational_closed_form_upper_tail_only = (z_{1-alpha/2} + z_{power})^2/d^2 (1 + 1/ratio), ignores the "
                    + (
                        "lower rejection tail. " + GB_POWER_NOTE
                        if exp["growthbook_power"] is not None
                        else f"lower rejection tail. growthbook_power is null: the installed gbstats {GBSTATS_VERSION} has no "
                        "power module (gbstats/power/midexperimentpower.py exists only upstream on GitHub, unreleased)."
                    )
                ),
            }
        )
        SUMMARY.append(
            f"{cid}: h={h:.6g} n_control_h={exp['n_control_cohens_h']:.2f} n_control_unpooled={exp['n_control_unpooled']:.2f} "
            f"power@5000 h={exp['power_at_n_cohens_h']:.4f}"
            + (
                f"; growthbook n_per_variation={exp['growthbook_power']['n_per_variation']:.2f}"
                if exp["growthbook_power"]
                else ""
            )
        )
    return cases


# ---------------------------------------------------------------------------
# 4. Non-inferiority / harm test on a guardrail (statsmodels)
# ---------------------------------------------------------------------------


def noninferiority_cases():
    cases = []
    c_n, c_x, v_n, v_x = 10000, 50, 10000, 80
    for cid, margin in (("harm_optout_margin_0_001", 0.001), ("harm_optout_margin_0", 0.0)):
        # sample 1 = variant, sample 2 = control, so diff = p_variant - p_control
        harm = test_proportions_2indep(v_x, v_n, c_x, c_n, value=margin, method="wald", compare="diff", alternative="larger")
        noninf = test_proportions_2indep(v_x, v_n, c_x, c_n, value=margin, method="wald", compare="diff", alternative="smaller")
        pv, pc = v_x / v_n, c_x / c_n
        var = pv * (1 - pv) / v_n + pc * (1 - pc) / c_n
        z = (pv - pc - margin) / math.sqrt(var)
        check(f"{cid} z (statsmodels vs hand)", harm.statistic, z)
        check(f"{cid} p harm (statsmodels vs norm.sf)", harm.pvalue, st.norm.sf(z), rel=1e-12)
        check(f"{cid} p noninf (statsmodels vs norm.sf(-z))", noninf.pvalue, st.norm.sf(-z), rel=1e-12)
        check(f"{cid} variance", harm.variance, var)
        exp = {
            "computed_with": [
                "statsmodels.stats.proportion.test_proportions_2indep(x_variant, n_variant, x_control, n_control, value=margin, method='wald', compare='diff', alternative='larger')  -> harm",
                "same with alternative='smaller' -> non-inferiority",
                "scipy.stats.norm.sf (cross-check)",
            ],
            "rate_control": f(pc),
            "rate_variant": f(pv),
            "abs_diff": f(harm.diff),
            "variance_wald": f(harm.variance),
            "se_wald": f(math.sqrt(harm.variance)),
            "z": f(harm.statistic),
            "p_value_harm": f(harm.pvalue),
            "harm_detected_at_alpha": bool(harm.pvalue < ALPHA),
            "p_value_noninferiority": f(noninf.pvalue),
            "noninferior_at_alpha": bool(noninf.pvalue < ALPHA),
            "one_sided_upper_bound_95": f(harm.diff + st.norm.isf(ALPHA) * math.sqrt(harm.variance)),
        }
        cases.append(
            {
                "id": cid,
                "kind": "noninferiority",
                "description": f"opt-out-rate guardrail (higher is worse): control 50/10000, variant 80/10000, margin {margin}",
                "input": {
                    "arms": [{"name": "control", "n": c_n, "x": c_x}, {"name": "variant_b", "n": v_n, "x": v_x}],
                    "control": "control",
                    "metric": "opt_out_rate",
                    "higher_is_worse": True,
                    "margin": margin,
                    "alpha": ALPHA,
                },
                "expected": exp,
                "note": (
                    "diff = p_variant - p_control. z = (diff - margin)/sqrt(p_v(1-p_v)/n_v + p_c(1-p_c)/n_c) "
                    "(Wald, unpooled, unrestricted, no continuity correction). "
                    "HARM test: H0: diff <= margin (no harm beyond the margin) vs H1: diff > margin (harm); "
                    "p_value_harm = norm.sf(z) (statsmodels alternative='larger', value=margin). "
                    "NON-INFERIORITY test (reverse direction, for information): H0: diff >= margin vs H1: diff < margin; "
                    "p_value_noninferiority = norm.sf(-z) (alternative='smaller'). "
                    "one_sided_upper_bound_95 = diff + z_{0.95} se."
                ),
            }
        )
        SUMMARY.append(f"{cid}: z={exp['z']:.6g} p_harm={exp['p_value_harm']:.6g} p_noninf={exp['p_value_noninferiority']:.6g}")
    return cases


# ---------------------------------------------------------------------------
# 5. Ratio metric, delta method (gbstats RatioStatistic)
# ---------------------------------------------------------------------------


def ratio_case():
    rng = np.random.default_rng(5)
    arms = []
    raw = []
    for name, n, lift in (("control", 1500, 1.0), ("variant_b", 1450, 1.06)):
        d = rng.poisson(12.0, n) + 1  # delivered messages per user
        m = np.round(d * rng.gamma(2.0, 0.02, n) * lift, 2)  # revenue per user
        raw.append((m, d.astype(float)))
        arms.append(
            {
                "name": name,
                "n": n,
                "sum_m": f(m.sum()),
                "sum_m2": f((m * m).sum()),
                "sum_d": f(d.sum()),
                "sum_d2": f((d * d).sum()),
                "sum_md": f((m * d).sum()),
            }
        )

    def stat(a):
        return RatioStatistic(
            n=a["n"],
            m_statistic=SampleMeanStatistic(n=a["n"], sum=a["sum_m"], sum_squares=a["sum_m2"]),
            d_statistic=SampleMeanStatistic(n=a["n"], sum=a["sum_d"], sum_squares=a["sum_d2"]),
            m_d_sum_of_products=a["sum_md"],
        )

    exp = {
        "computed_with": [
            f"gbstats {GBSTATS_VERSION}: gbstats.models.statistics.RatioStatistic(n, m_statistic=SampleMeanStatistic, d_statistic=SampleMeanStatistic, m_d_sum_of_products)",
            "gbstats.frequentist.tests.TwoSidedTTest(..., FrequentistConfig(difference_type='absolute'|'relative')).compute_result()",
            "scipy.stats.t.sf, scipy.stats.norm.sf",
            "numpy.cov (cross-check of the delta method)",
        ],
        "arms": [],
    }
    for a, (m, d) in zip(arms, raw):
        s = stat(a)
        # cross-check: delta method from the raw data with numpy
        cov = np.cov(np.vstack([m, d]), ddof=1)
        mm, md = m.mean(), d.mean()
        g = np.array([1 / md, -mm / md**2])
        check(f"ratio {a['name']} unit variance (gbstats vs numpy delta)", s.variance, g @ cov @ g, rel=1e-9)
        exp["arms"].append(
            {
                "name": a["name"],
                "ratio": f(s.mean),
                "mean_m": f(s.m_statistic.mean),
                "mean_d": f(s.d_statistic.mean),
                "var_m": f(s.m_statistic.variance),
                "var_d": f(s.d_statistic.variance),
                "cov_md": f(s.covariance),
                "unit_variance_delta": f(s.variance),
                "variance_of_ratio": f(s.variance / s.n),
            }
        )
    for dt in ("absolute", "relative"):
        t = TwoSidedTTest(stat(arms[0]), stat(arms[1]), FrequentistConfig(difference_type=dt, alpha=ALPHA))
        r = t.compute_result()
        assert r.error_message is None
        tstat = t.critical_value
        p_t = 2 * st.t.sf(abs(tstat), t.dof)
        check(f"ratio {dt} p (sf vs gbstats 1-cdf)", p_t, r.p_value, rel=1e-6, abs_=1e-10)
        z = st.norm.isf(ALPHA / 2)
        se = math.sqrt(t.variance)
        exp[dt] = {
            "point_estimate": f(r.expected),
            "variance": f(t.variance),
            "std_error": f(se),
            "welch_dof": f(t.dof),
            "t_stat": f(tstat),
            "ci95_welch_t": [f(r.ci[0]), f(r.ci[1])],
            "p_value_welch_t": f(p_t),
            "p_value_gbstats_1_minus_cdf": f(r.p_value),
            "ci95_z": [f(r.expected - z * se), f(r.expected + z * se)],
            "p_value_z": f(2 * st.norm.sf(abs(tstat))),
        }
    SUMMARY.append(
        f"ratio_revenue_per_delivered_message: abs {exp['absolute']['point_estimate']:.6g} p_t {exp['absolute']['p_value_welch_t']:.6g}; "
        f"rel {exp['relative']['point_estimate']:.6g} p_t {exp['relative']['p_value_welch_t']:.6g}"
    )
    return {
        "id": "ratio_revenue_per_delivered_message",
        "kind": "ratio_delta",
        "description": "revenue per delivered message (ratio of per-user sums), delta method, gbstats RatioStatistic + TwoSidedTTest",
        "input": {
            "arms": arms,
            "control": "control",
            "alpha": ALPHA,
            "generator": {
                "numpy_default_rng_seed": 5,
                "model": "per arm (control n=1500, variant n=1450): d = poisson(12, n) + 1; m = round(d * gamma(2, 0.02, n) * lift, 2), lift 1.0 / 1.06",
            },
        },
        "expected": exp,
        "note": (
            "m = numerator (revenue), d = denominator (delivered messages), one row per user. "
            "ratio = sum_m/sum_d. var_m, var_d, cov_md use n-1. gbstats RatioStatistic.variance (per-unit delta method) = "
            "var_m/mean_d^2 - 2 cov_md mean_m/mean_d^3 + mean_m^2 var_d/mean_d^4; variance_of_ratio = that / n. "
            "absolute Var = V_b/n_b + V_a/n_a; relative Var = V_b/(R_a^2 n_b) + V_a R_b^2/(R_a^4 n_a). "
            "gbstats uses Student t with Welch-Satterthwaite dof computed from V_a, V_b (also for the relative estimate); "
            "*_z fields use the normal instead, for implementations without t."
        ),
    }


# ---------------------------------------------------------------------------
# 6. Multiple comparisons with ties and p = 1
# ---------------------------------------------------------------------------


def multiple_case():
    p = [0.01, 0.04, 0.04, 0.03, 0.5, 1.0]
    exp = {"computed_with": ["statsmodels.stats.multitest.multipletests(p, alpha=0.05, method='holm'|'fdr_bh'|'bonferroni')"]}
    for key, method in (("holm", "holm"), ("bh", "fdr_bh"), ("bonferroni", "bonferroni")):
        rej, adj, _, _ = multipletests(p, alpha=ALPHA, method=method)
        exp[f"{key}_adjusted"] = [f(x) for x in adj]
        exp[f"{key}_reject"] = [bool(x) for x in rej]
    SUMMARY.append(f"bh_with_ties_and_one: bh {exp['bh_adjusted']} holm {exp['holm_adjusted']}")
    return {
        "id": "bh_with_ties_and_one",
        "kind": "multiple_comparisons",
        "description": "ties and a p-value of exactly 1, unsorted input; adjusted values are in input order",
        "input": {"p_values": p, "alpha": ALPHA},
        "expected": exp,
    }


# ---------------------------------------------------------------------------
# 7. Winsorizing at the 99.9th percentile
# ---------------------------------------------------------------------------


def winsorize_case():
    rng = np.random.default_rng(3)
    x = np.round(rng.lognormal(mean=1.0, sigma=1.0, size=2000), 2)
    q = 99.9
    cap = np.percentile(x, q)  # method='linear' (default)
    capped = np.minimum(x, cap)
    # cross-check the linear interpolation by hand
    s = np.sort(x)
    h = (len(x) - 1) * (q / 100)  # numpy: (n-1) * quantile, quantile = 99.9/100 = 0.9990000000000001
    lo = math.floor(h)
    gamma = h - lo
    assert gamma < 0.5  # numpy's _lerp uses a + (b-a)*gamma below 0.5, b - (b-a)*(1-gamma) above
    cap_hand = s[lo] + (s[lo + 1] - s[lo]) * gamma
    check("winsorize cap (numpy vs hand)", cap, cap_hand, rel=0.0, abs_=0.0)
    check("winsorize capped var (numpy vs statistics)", capped.var(ddof=1), st.tvar(capped), rel=1e-12)
    exp = {
        "computed_with": [
            "numpy.percentile(values, 99.9)  (method='linear')",
            "numpy.minimum(values, cap)",
            "numpy.mean, numpy.var(ddof=1)",
        ],
        "n": len(x),
        "cap": f(cap),
        "linear_index_h": f(h),
        "gamma": f(gamma),
        "order_stats_0_based": [lo, lo + 1],
        "order_stat_values": [f(s[lo]), f(s[lo + 1])],
        "n_above_cap": int((x > cap).sum()),
        "raw_mean": f(x.mean()),
        "raw_variance": f(x.var(ddof=1)),
        "capped_mean": f(capped.mean()),
        "capped_variance": f(capped.var(ddof=1)),
        "capped_sum": f(capped.sum()),
    }
    SUMMARY.append(f"winsorize_lognormal_p999: cap {exp['cap']} n_above {exp['n_above_cap']} capped mean {exp['capped_mean']:.6g}")
    return {
        "id": "winsorize_lognormal_p999",
        "kind": "winsorize",
        "description": "cap a skewed sample at its 99.9th percentile (linear interpolation), capped mean and variance",
        "input": {
            "percentile": q,
            "method": "linear",
            "generator": {"numpy_default_rng_seed": 3, "model": "lognormal(mean=1, sigma=1, size=2000), rounded to 0.01"},
            "values": [f(v) for v in x],
        },
        "expected": exp,
        "note": (
            "numpy 'linear' percentile: sort ascending, h = (n-1) * (q/100) evaluated in that order (q/100 = 0.9990000000000001, "
            "h = 1997.0010000000002), gamma = h - floor h, cap = s[floor h] + (s[floor h + 1] - s[floor h]) * gamma "
            "(numpy uses s[floor h + 1] - (diff)*(1 - gamma) when gamma >= 0.5). Computing h as (n-1)*q/100 instead moves the "
            "cap by about 2e-12. "
            "Capped values are min(v, cap) (upper tail only). Variances use n-1. Means/variances depend on summation "
            "order at the 1e-15 relative level only."
        ),
    }


# ---------------------------------------------------------------------------
# 8. Slice effect vs rest (heterogeneity z test)
# ---------------------------------------------------------------------------


def slice_case():
    slices = [
        ("BR", (4000, 400), (4000, 460)),
        ("IN", (6000, 540), (6000, 560)),
        ("ID", (2500, 300), (2500, 290)),
        ("MX", (1500, 120), (1500, 150)),
    ]
    m = len(slices)

    def effect(cn, cx, vn, vx):
        r = test_proportions_2indep(vx, vn, cx, cn, value=0, method="wald", compare="diff", alternative="two-sided")
        return r.diff, r.variance

    out = []
    pvals = []
    for i, (name, (cn, cx), (vn, vx)) in enumerate(slices):
        rest = [s for j, s in enumerate(slices) if j != i]
        rcn, rcx = sum(s[1][0] for s in rest), sum(s[1][1] for s in rest)
        rvn, rvx = sum(s[2][0] for s in rest), sum(s[2][1] for s in rest)
        ds, vs = effect(cn, cx, vn, vx)
        dr, vr = effect(rcn, rcx, rvn, rvx)
        check(f"slice {name} d (statsmodels vs hand)", ds, vx / vn - cx / cn)
        z = (ds - dr) / math.sqrt(vs + vr)
        p = 2 * st.norm.sf(abs(z))
        pvals.append(p)
        out.append(
            {
                "name": name,
                "rest_control": {"n": rcn, "x": rcx},
                "rest_variant": {"n": rvn, "x": rvx},
                "d_slice": f(ds),
                "v_slice": f(vs),
                "d_rest": f(dr),
                "v_rest": f(vr),
                "z": f(z),
                "p_value": f(p),
            }
        )
    _, adj, _, _ = multipletests(pvals, alpha=ALPHA, method="bonferroni")
    for o, a, p in zip(out, adj, pvals):
        check(f"slice {o['name']} bonferroni", a, min(1.0, m * p))
        o["p_value_bonferroni"] = f(a)
        o["reject_bonferroni"] = bool(a < ALPHA)
    SUMMARY.append("slice_vs_rest_four_countries: " + ", ".join(f"{o['name']} z={o['z']:.4g} p={o['p_value']:.4g}" for o in out))
    return {
        "id": "slice_vs_rest_four_countries",
        "kind": "welch_slice_vs_rest",
        "description": "is a slice's lift different from the rest's? 4 country slices of a proportion metric",
        "input": {
            "slices": [
                {"name": n, "control": {"n": c[0], "x": c[1]}, "variant": {"n": v[0], "x": v[1]}} for n, c, v in slices
            ],
            "rest_definition": "rest = the sum of the control and variant counts of all other slices",
            "alpha": ALPHA,
            "n_tests": m,
        },
        "expected": {
            "computed_with": [
                "statsmodels.stats.proportion.test_proportions_2indep(x_v, n_v, x_c, n_c, method='wald', compare='diff') -> diff, variance",
                "scipy.stats.norm.sf",
                "statsmodels.stats.multitest.multipletests(method='bonferroni')",
            ],
            "slices": out,
        },
        "note": (
            "d = p_variant - p_control, v = p_v(1-p_v)/n_v + p_c(1-p_c)/n_c (unpooled Wald), for the slice and for the rest. "
            "z = (d_slice - d_rest)/sqrt(v_slice + v_rest); p = 2 norm.sf(|z|); p_value_bonferroni = min(1, 4 p)."
        ),
    }


# ---------------------------------------------------------------------------


def compare_with_existing(data, new_cases):
    """Where gbstats results overlap earlier cases (gen_ab_cases.py) or statsmodels, say how they compare."""
    new = {c["id"]: c for c in new_cases}
    old = {c["id"]: c for c in data["cases"]}
    seq = new["seq_mean_25_vs_30_nstar5000"]["expected"]
    if "revenue_per_user_small" in old:
        cmp = old["revenue_per_user_small"]["expected"]["comparisons"][0]
        for dt in ("absolute", "relative"):
            o = cmp[f"growthbook_sequential_{dt}"]
            check(f"seq_mean_25_vs_30_nstar5000 {dt} halfwidth vs revenue_per_user_small", seq[dt]["halfwidth"], o["halfwidth"])
            check(f"seq_mean_25_vs_30_nstar5000 {dt} p vs revenue_per_user_small", seq[dt]["p_value"], o["p_value"])
            check(f"seq_mean_25_vs_30_nstar5000 {dt} ci lo vs revenue_per_user_small", seq[dt]["ci"][0], o["ci"][0])
        g = cmp["growthbook_frequentist_relative"]
        fr = seq["fixed_horizon_relative"]
        check("gbstats TwoSidedTTest relative p vs revenue_per_user_small", fr["p_value"], g["p_value_t"], rel=1e-6)
        check("gbstats TwoSidedTTest relative ci vs revenue_per_user_small", fr["ci"][0], g["ci95_rel_lift_t"][0])
        SUMMARY.append("gbstats sequential/fixed-horizon numbers for the n=25/30 means were compared with revenue_per_user_small")
    # gbstats fixed horizon (Student t, Welch dof, p(1-p) variances) vs statsmodels Wald z on the same counts:
    # the same SE, different reference distribution -> expected small differences, reported for information.
    for cid in ("seq_prop_1000_100_vs_1000_130_nstar5000", "seq_prop_20000_2000_vs_20000_2100_nstar5000"):
        c = new[cid]
        a, b = c["input"]["arms"]
        r = test_proportions_2indep(b["sum"], b["n"], a["sum"], a["n"], value=0, method="wald", compare="diff")
        g = c["expected"]["fixed_horizon_absolute"]
        check(f"{cid} SE gbstats vs statsmodels wald", g["std_error"], math.sqrt(r.variance))
        SUMMARY.append(
            f"info {cid}: gbstats fixed-horizon p (t, dof {g['welch_dof']:.1f}) {g['p_value']:.10g} vs statsmodels Wald z p "
            f"{r.pvalue:.10g} (same SE; gbstats uses Student t, not normal)"
        )


def main():
    text = FIXTURE.read_text()
    data = json.loads(text)
    if json.dumps(data, indent=1, ensure_ascii=False) != text:
        print("warning: the file is not in json.dumps(indent=1) form; it will be re-formatted", file=sys.stderr)

    new_cases = []
    new_cases += sequential_cases()
    old = {c["id"]: c for c in data["cases"]}
    new_cases.append(cuped_ps_case(old))
    new_cases += power_cases(old)
    new_cases += noninferiority_cases()
    new_cases.append(ratio_case())
    new_cases.append(multiple_case())
    new_cases.append(winsorize_case())
    new_cases.append(slice_case())

    compare_with_existing(data, new_cases)

    own = {c["id"] for c in new_cases}
    assert len(own) == len(new_cases), "duplicate ids"
    cases = data["cases"]
    index = {c["id"]: i for i, c in enumerate(cases)}
    for c in new_cases:
        if c["id"] in index:
            cases[index[c["id"]]] = c
        else:
            cases.append(c)

    lv = data["library_versions"]
    lv["gbstats"] = GBSTATS_VERSION
    lv["make_ab_vectors.py"] = {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "statsmodels": statsmodels.__version__,
        "pandas": importlib.metadata.version("pandas"),
        "gbstats": GBSTATS_VERSION,
        "note": "versions used for the cases written by scripts/make_ab_vectors.py (gbstats 0.8.0 requires numpy<2); "
        "the top-level numpy/scipy/statsmodels entries are those of gen_ab_cases.py",
        "case_ids": [c["id"] for c in new_cases],
    }
    data["extended_by"] = "scripts/make_ab_vectors.py"

    out = json.dumps(data, indent=1, ensure_ascii=False, allow_nan=False)
    FIXTURE.write_text(out)

    print(f"wrote {FIXTURE} ({len(cases)} cases, {len(new_cases)} from this script)")
    for line in SUMMARY:
        print("  " + line)
    if DISAGREEMENTS:
        print("disagreements / cross-check differences:")
        for d in DISAGREEMENTS:
            print("  " + d)
    else:
        print("no disagreements between gbstats, statsmodels, scipy and the hand cross-checks")


if __name__ == "__main__":
    main()
