"""The demo's WSGAN section: a weak modality that lost the sign of 4 latent coordinates (C2), matched to a
strong gallery by sampling the generator (m = 10, Parzen scoring) next to the best deterministic map
(regression to the class mean, M2) and the oracle's samples of the true p(strong | weak). About a minute
on 2 cores; the full comparison is ``tfface bench wsgan``."""

from __future__ import annotations

import time

__all__ = ["run_wsgan_section", "wsgan_markdown"]

WORLD = {"condition": "C2", "lost": 4, "train_identities": 600, "weak_train_identities": 300, "val_identities": 100,
         "test_identities": 200, "distractors": 400, "strong_per_identity": 10}


def run_wsgan_section(quick: bool = False, seed: int = 0) -> dict:
    from tfface.data.weak_strong import WeakStrongConfig, make_world, oracle_samples
    from tfface.experiments.wsgan import WSGANBenchConfig, deterministic_metrics, sampler_metrics
    from tfface.methods.wsgan import WSGANConfig
    from tfface.methods.wsgan.data import check_labels
    from tfface.training.wsgan import pretrain, pretrain_networks, train_class_mean_mapper, train_wsgan

    t0 = time.perf_counter()
    wc = WeakStrongConfig(seed=seed, **WORLD)
    w = make_world(wc)
    classes = check_labels(w["train_strong_labels"], w["train_weak_labels"])
    cfg = WSGANConfig.preset("cpu", weak_dim=wc.weak_dim, strong_dim=wc.strong_dim, seed=seed)
    pre = pretrain(cfg, w["train_strong"], w["train_strong_labels"], classes, 2 if quick else 4)[:2]
    bench = WSGANBenchConfig(m_values=(1, 10), draws=1 if quick else 2)
    val = ("val_gallery", "val_gallery_labels", "val_labels")
    res = train_wsgan(cfg, w, classes, 30 if quick else 400, pretrained=pre)
    model = res.model
    fval = (model.strong_features(w["val_gallery"]), w["val_gallery_labels"], w["val_labels"])
    ftest = (model.strong_features(w["gallery"]), w["gallery_labels"], w["test_labels"])
    out = {"wsgan": sampler_metrics(lambda split, m, s: model.generate(w[f"{split}_weak"], m=m, seed=s),
                                     fval, ftest, bench)}
    m2 = train_class_mean_mapper(cfg, w, pre, classes, epochs=5 if quick else 30)
    f, _, _ = pretrain_networks(cfg, classes)
    f.set_weights(pre[0])
    out["class_mean"] = deterministic_metrics(m2.model(w["test_weak"]),
                                               (f.predict(w["gallery"], verbose=0), w["gallery_labels"],
                                                w["test_labels"]))
    out["oracle"] = sampler_metrics(lambda split, m, s: oracle_samples(w[f"{split}_weak"], wc, m, seed=s),
                                     tuple(w[k] for k in val), (w["gallery"], w["gallery_labels"], w["test_labels"]),
                                     bench)
    return {"world": WORLD, "iterations": 30 if quick else 400, "metrics": out,
            "seconds": round(time.perf_counter() - t0, 1)}


def wsgan_markdown(section: dict) -> str:
    m = section["metrics"]
    rows = [("WSGAN, m = 10, sigma from validation", m["wsgan"], "m10"), ("WSGAN, m = 1", m["wsgan"], "m1"),
            ("WSGAN, sigma -> inf (its samples' mean)", m["wsgan"], "sigma_inf"),
            ("regression to the class mean (M2, deterministic)", m["class_mean"], "m1"),
            ("oracle samples of the true p(strong given weak), m = 10", m["oracle"], "m10")]
    lines = ["## WSGAN: weak-to-strong matching by sampling", "",
             f"Feature-level world C2 (the weak sample lost the sign of {section['world']['lost']} latent "
             f"coordinates), {section['world']['test_identities']} test identities, "
             f"{section['world']['distractors']} distractors, {section['iterations']} WSGAN iterations "
             f"({section['seconds']:.0f} s). `tfface bench wsgan` runs the full comparison with seeds.", "",
             "| matcher | Recall@1 | Recall@5 | TPR@FPR=1e-2 |", "|---|---|---|---|"]
    for name, d, key in rows:
        lines.append(f"| {name} | {d[f'{key}/recall@1']:.3f} | {d[f'{key}/recall@5']:.3f} | "
                     f"{d[f'{key}/tpr@fpr=0.01']:.3f} |")
    return "\n".join(lines) + "\n"
