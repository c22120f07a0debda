# Sourced by the scripts: lets Open MPI run as root (containers, CI) and
# allows more ranks than cores for tests on small machines.
export OMPI_ALLOW_RUN_AS_ROOT=1
export OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_rmaps_base_oversubscribe=1
