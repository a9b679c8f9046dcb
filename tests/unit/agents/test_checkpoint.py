from agents.checkpoint import HostSnapshot, load, save
from fedrift import datasets
from fedrift.core.models import FAMILIES


def test_a_trained_model_comes_back_predicting_the_same(tmp_path):
    rows = list(datasets.synthetic("sea", 1500, seed=1))
    fam = FAMILIES["arf"]
    model = fam.build(fam.defaults, seed=0)
    for x, y in rows[:1000]:
        model.learn_one(x, y)
    path = tmp_path / "hosts" / "arf-0.pkl"
    save(path, HostSnapshot("cfg-1", model, window=[(i, x, y) for i, (x, y) in enumerate(rows[:10])]))
    back = load(path, "cfg-1")
    assert back is not None and len(back.window) == 10
    assert [back.production.predict_one(x) for x, _ in rows[1000:]] == [model.predict_one(x) for x, _ in rows[1000:]]
    assert not list(path.parent.glob("*.tmp"))  # written atomically


def test_a_torn_or_foreign_checkpoint_is_ignored(tmp_path):
    path = tmp_path / "x.pkl"
    path.write_bytes(b"\x80\x05garbage")
    assert load(path, "cfg") is None
    assert load(tmp_path / "missing.pkl", "cfg") is None
