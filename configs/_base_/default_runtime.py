# Runtime settings shared by every mmfunmatch config (MMPretrain's defaults,
# plus the mmfunmatch import and the reliability hooks of
# docs/reliability.md; the mixup's (seed, step) state travels in the model's
# state dict, so no hook is needed for it).
default_scope = 'mmpretrain'
custom_imports = dict(imports=['mmfunmatch'], allow_failed_imports=False)

default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=100),
    param_scheduler=dict(type='ParamSchedulerHook'),
    # Crash-safe saving (temporary file + rename), plus a mid-epoch
    # resume point every 1000 iterations (newest 2 kept).
    checkpoint=dict(
        type='SafeCheckpointHook', interval=1, max_keep_ckpts=3,
        save_last=True, iter_interval=1000, max_keep_iter_ckpts=2),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    visualization=dict(type='VisualizationHook', enable=False),
    # Randomness as a function of position: exact (mid-epoch) resume.
    exact_resume=dict(type='ExactResumeHook'),
    # Stop at the first NaN/inf gradient or loss, before it reaches weights.
    nonfinite=dict(type='NonFiniteGuardHook', action='stop'),
    # Multi-process runs: check the ranks end with identical weights.
    rank_check=dict(type='RankConsistencyHook'),
    # Pre-emption (Slurm, cloud spot machines) warns with a signal, then
    # kills: on SIGTERM every rank finishes its iteration, saves iter_N.pth
    # atomically and exits with code 5 (tools/slurm_train.sh requeues on
    # it), instead of losing up to iter_interval iterations. For
    # `#SBATCH --signal=USR1@90`: --cfg-options
    # default_hooks.preemption.signals=[SIGUSR1]
    preemption=dict(type='PreemptionHook', signals=['SIGTERM']),
)
env_cfg = dict(
    cudnn_benchmark=True,
    mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
    # A lost rank ends the others' collectives after this many seconds.
    dist_cfg=dict(backend='nccl', timeout=1800),
)
vis_backends = [dict(type='LocalVisBackend')]
visualizer = dict(type='UniversalVisualizer', vis_backends=vis_backends)
log_level = 'INFO'
load_from = None
resume = False
randomness = dict(seed=0, deterministic=False)
