"""The ring attention benchmark's CPU-side logic: launcher detection and the merge
of a multi-GPU block into the one-GPU document (docs/benchmarks/ring_attention.json)."""
import copy

from ravensp.bench import ring_attention as ra

ONE_GPU = {
    "device": "NVIDIA H100 80GB HBM3", "torch": "2.11.0+cu130",
    "note": "FLOP-based efficiency ...; the measured 2-GPU run is pending",
    "results": [{"tokens_per_gpu": L, "efficiency_vs_local_sdpa_1gpu": 0.9,
                 "efficiency_vs_local_sdpa_2gpu": None} for L in (32768, 65536, 131072)],
}


def test_merge_keeps_one_gpu_results_and_fills_measured_efficiency():
    multi = {"gpus": 2, "rows": [{"tokens_per_gpu": 32768, "efficiency_vs_local_sdpa_2gpu": 0.8},
                                 {"tokens_per_gpu": 131072, "efficiency_vs_local_sdpa_2gpu": 0.95}]}
    before = copy.deepcopy(ONE_GPU)
    doc = ra.merge_multi_gpu(ONE_GPU, multi)
    assert ONE_GPU == before  # the input is not modified
    assert doc["multi_gpu"] is multi
    assert [r["efficiency_vs_local_sdpa_2gpu"] for r in doc["results"]] == [0.8, None, 0.95]
    assert [r["efficiency_vs_local_sdpa_1gpu"] for r in doc["results"]] == [0.9] * 3
    assert "pending" not in doc["note"] and "multi_gpu" in doc["note"]
    # merging again (a rerun) replaces the block rather than stacking it
    again = ra.merge_multi_gpu(doc, {"gpus": 2, "rows": [{"tokens_per_gpu": 65536,
                                                         "efficiency_vs_local_sdpa_2gpu": 0.7}]})
    assert [r["efficiency_vs_local_sdpa_2gpu"] for r in again["results"]] == [0.8, 0.7, 0.95]
    assert again["multi_gpu"]["rows"][0]["tokens_per_gpu"] == 65536


def test_merge_into_missing_file(tmp_path):
    doc = ra.merge_multi_gpu(ra.read_doc(str(tmp_path / "none.json")), {"gpus": 4, "rows": []})
    assert doc == {"multi_gpu_4gpu": {"gpus": 4, "rows": []}}


def test_four_gpu_block_sits_beside_the_two_gpu_block():
    two = {"gpus": 2, "rows": [{"tokens_per_gpu": 32768, "efficiency_vs_local_sdpa_2gpu": 0.8}]}
    four = {"gpus": 4, "rows": [{"tokens_per_gpu": 32768, "efficiency_vs_local_sdpa_4gpu": 0.7}]}
    doc = ra.merge_multi_gpu(ra.merge_multi_gpu(ONE_GPU, two), four)
    # The second merge copies the document, the two-GPU block with it: equal, not the same.
    assert doc["multi_gpu"] == two and doc["multi_gpu_4gpu"] is four
    row = doc["results"][0]
    assert (row["efficiency_vs_local_sdpa_2gpu"], row["efficiency_vs_local_sdpa_4gpu"]) == (0.8, 0.7)


def test_launch_world(monkeypatch):
    for k in ("OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_LOCAL_RANK",
              "WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(k, raising=False)
    assert ra.launch_world() == (1, 0, 0, None)
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert ra.launch_world() == (2, 1, 1, "torchrun")
    monkeypatch.setenv("OMPI_COMM_WORLD_SIZE", "4")
    monkeypatch.setenv("OMPI_COMM_WORLD_RANK", "3")
    monkeypatch.setenv("OMPI_COMM_WORLD_LOCAL_RANK", "3")
    assert ra.launch_world() == (4, 3, 3, "mpirun")


def test_parse_args_defaults():
    a = ra.parse_args([])
    assert a.lengths == "32768,65536,131072" and (a.heads, a.kv_heads, a.head_dim) == (16, 16, 128)
    assert not a.no_torch_cp
