"""Sequence-parallel groups for Python: bootstraps, the layout, sharding.

An :class:`SPGroup` names a native communicator (MPI or TCP for CPU tensors,
NCCL for CUDA tensors) by an integer handle, which is what the SP ops take, and
carries the sequence layout chosen once for the whole model ("zigzag" balances
causal attention; "contiguous" is the plain split). Sharding, unsharding and the
global positions of a shard come from the same C++ layout code the ops use.

    group = ravensp.distributed.init_mpi(layout="zigzag")       # under mpirun / srun
    group = ravensp.distributed.init_from_env(device=torch.device("cuda", local_rank))  # torchrun
    group = ravensp.distributed.from_torch(pg, device=...)       # an existing torch.distributed group
    dp, sp = ravensp.distributed.init_mesh(world, sp_size=4)
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Sequence, Union

import torch

from . import _C

LAYOUTS = {"contiguous": 0, "zigzag": 1}
EXCHANGES = {"lasp2": 0, "lasp1": 1}


def _layout_id(layout: Union[str, int]) -> int:
    if isinstance(layout, int) and layout in LAYOUTS.values():
        return layout
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {sorted(LAYOUTS)}, got {layout!r}")
    return LAYOUTS[layout]


class SPGroup:
    """A communicator handle plus the sequence layout."""

    def __init__(self, handle: int, layout: Union[str, int] = "zigzag"):
        self.handle = int(handle)
        self.layout = _layout_id(layout)
        self.rank, self.size, self.backend, self.name = _C.group_info(self.handle)

    @property
    def layout_name(self) -> str:
        return next(k for k, v in LAYOUTS.items() if v == self.layout)

    def __repr__(self) -> str:
        return (f"SPGroup(rank={self.rank}, size={self.size}, backend={self.backend}, "
                f"layout={self.layout_name})")

    def shard(self, x: torch.Tensor, dim: int = 1) -> torch.Tensor:
        """This rank's part of a global tensor (the sequence along `dim`)."""
        return torch.ops.ravensp.sp_shard(x, dim, self.layout, self.rank, self.size)

    def unshard(self, shards: Sequence[torch.Tensor], dim: int = 1) -> torch.Tensor:
        """The global tensor from every rank's shard, given in rank order."""
        if len(shards) != self.size:
            raise ValueError(f"unshard needs {self.size} shards (one per rank), got {len(shards)}")
        return torch.ops.ravensp.sp_unshard(list(shards), dim, self.layout)

    def all_gather(self, x: torch.Tensor) -> torch.Tensor:
        """[P, *x.shape]: x from every rank (no autograd)."""
        return torch.ops.ravensp.sp_all_gather(x, self.handle)

    def gather_sequence(self, x: torch.Tensor, dim: int = 1) -> torch.Tensor:
        """The global tensor rebuilt on every rank from each rank's shard."""
        return self.unshard(list(self.all_gather(x).unbind(0)), dim)

    def positions(self, local_len: int, device: Optional[torch.device] = None) -> torch.Tensor:
        """Global positions [local_len] (int64) of this rank's tokens."""
        like = torch.empty(0, device=device)
        return torch.ops.ravensp.sp_positions(self.layout, self.rank, self.size, local_len, like)

    def barrier(self) -> None:
        _C.group_barrier(self.handle)

    def set_timeout(self, seconds: float) -> None:
        _C.group_set_timeout(self.handle, float(seconds))

    def destroy(self) -> None:
        _C.group_destroy(self.handle)


def shard_positions(group: Optional[SPGroup], local_len: int, device=None) -> torch.Tensor:
    """Global positions [local_len] of this rank's tokens (0..L-1 without a group)."""
    if group is None:
        return torch.arange(local_len, device=device)
    return group.positions(local_len, device)


def document_positions(positions: torch.Tensor, cu_seqlens: Optional[torch.Tensor]) -> torch.Tensor:
    """Each token's position inside its document: its global position minus its
    document's start (global cu_seqlens), or the global position when not packed."""
    if cu_seqlens is None:
        return positions
    cu = cu_seqlens.to(device=positions.device, dtype=torch.int64)
    return positions - cu[torch.searchsorted(cu[1:], positions, right=True)]


def init_mpi(layout: Union[str, int] = "zigzag") -> SPGroup:
    """The MPI world (mpirun, srun) as a host-memory group for CPU tensors."""
    return SPGroup(_C.group_init_mpi(), layout)


def init_single(device: Optional[torch.device] = None, layout: Union[str, int] = "zigzag") -> SPGroup:
    """A one-rank group in this process (NCCL on a CUDA device, else a one-rank
    TCP mesh): the SP code path on one GPU, for benchmarks and tests."""
    if device is not None and torch.device(device).type == "cuda":
        dev = torch.device(device)
        index = dev.index if dev.index is not None else torch.cuda.current_device()
        return SPGroup(_C.group_init_nccl(_C.nccl_unique_id(), 0, 1, index), layout)
    if _C.build_info()["mpi"]:
        return SPGroup(_C.group_init_mpi(), layout)
    raise RuntimeError("init_single: a CPU group needs the MPI backend (build with RAVENSP_WITH_MPI)")


def init_from_env(layout: Union[str, int] = "zigzag",
                  device: Optional[torch.device] = None) -> SPGroup:
    """From the launcher's environment: MPI (mpirun/srun) or torchrun (RANK,
    WORLD_SIZE, MASTER_ADDR, MASTER_PORT). With a CUDA device, an NCCL group on it
    (bootstrapped over the host group); otherwise the host group itself."""
    kind, _, _, _ = _C.launch_env()
    if kind == "mpi":
        host = _C.group_init_mpi()
    elif kind == "torchrun":
        host = _C.group_init_tcp_from_env()
    else:
        raise RuntimeError("init_from_env: no launcher environment found (neither OMPI_*/PMI_*/"
                           "SLURM_* nor RANK/WORLD_SIZE/MASTER_ADDR/MASTER_PORT are set)")
    if device is None or torch.device(device).type != "cuda":
        return SPGroup(host, layout)
    return _nccl_over(SPGroup(host, layout), torch.device(device), layout)


def _nccl_over(host: SPGroup, device: torch.device, layout) -> SPGroup:
    uid = _C.nccl_unique_id() if host.rank == 0 else bytes(128)
    buf = torch.frombuffer(bytearray(uid), dtype=torch.uint8).to(torch.int64)
    buf = host.all_gather(buf)[0].to(torch.uint8)
    index = device.index if device.index is not None else torch.cuda.current_device()
    nccl = _C.group_init_nccl(bytes(buf.tolist()), host.rank, host.size, index)
    # The host group stays on as the NCCL group's control plane (shape handshakes
    # without waiting for the GPU); the NCCL group's handle now owns it.
    _C.group_set_control(nccl, host.handle)
    _C.group_destroy(host.handle)
    return SPGroup(nccl, layout)


def from_torch(process_group=None, layout: Union[str, int] = "zigzag",
               device: Optional[torch.device] = None) -> SPGroup:
    """A group with the same ranks as an existing torch.distributed process group.

    CUDA device: an NCCL communicator whose unique id travels over the torch group.
    CPU: the launcher's host group (MPI or torchrun's environment), checked to have
    the same size and rank as the torch group.
    """
    import torch.distributed as dist

    if not dist.is_initialized():
        raise RuntimeError("from_torch: torch.distributed is not initialized")
    rank, size = dist.get_rank(process_group), dist.get_world_size(process_group)
    if device is not None and torch.device(device).type == "cuda":
        obj: List[Optional[bytes]] = [_C.nccl_unique_id() if rank == 0 else None]
        dist.broadcast_object_list(obj, src=dist.get_global_rank(process_group, 0)
                                   if process_group is not None else 0, group=process_group)
        dev = torch.device(device)
        index = dev.index if dev.index is not None else torch.cuda.current_device()
        return SPGroup(_C.group_init_nccl(obj[0], rank, size, index), layout)
    group = init_from_env(layout)
    if (group.rank, group.size) != (rank, size):
        raise RuntimeError(f"from_torch: the torch group has rank {rank} of {size} but the "
                           f"launcher environment gives rank {group.rank} of {group.size}; "
                           "CPU groups must span the whole launched job")
    return group


@dataclass
class Mesh:
    dp: SPGroup
    sp: SPGroup


def init_mesh(world: SPGroup, sp_size: int) -> Mesh:
    """Data-parallel x sequence-parallel groups: ranks [d*sp_size, (d+1)*sp_size)
    form SP group d (neighbouring ranks, one node); DP groups stride by sp_size."""
    if sp_size <= 0 or world.size % sp_size:
        raise ValueError(f"sp_size={sp_size} must divide the world size {world.size}")
    dp, sp = _C.group_mesh(world.handle, sp_size)
    return Mesh(SPGroup(dp, world.layout), SPGroup(sp, world.layout))


def sp_gsa(q, k, v, s, g, group: SPGroup, scale: Optional[float] = None, initial_state=None,
           cu_seqlens: Optional[torch.Tensor] = None, exchange: str = "lasp2",
           chunk_size: int = 64) -> torch.Tensor:
    """Gated slot attention on this rank's shard (DESIGN.md §4); differentiable.

    q, k: [B, L, H, K]; v: [B, L, H, V]; s, g: [B, L, H, M] local shards in the
    group's layout. cu_seqlens: GLOBAL document offsets (B == 1). initial_state:
    (hk [B, H, K, M], hv [B, H, M, V]) of the whole sequence, used on rank 0.
    """
    if exchange not in EXCHANGES:
        raise ValueError(f"exchange must be one of {sorted(EXCHANGES)}, got {exchange!r}")
    hk0, hv0 = (None, None) if initial_state is None else initial_state
    scale = q.shape[-1] ** -0.5 if scale is None else float(scale)
    return torch.ops.ravensp.sp_gsa(q, k, v, s, g, scale, hk0, hv0, cu_seqlens, group.handle,
                                    group.layout, EXCHANGES[exchange], chunk_size)
