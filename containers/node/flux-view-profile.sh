# compat-harness: a shell in a Flux Operator pod finds the Flux view and its local broker.
#
# Installed as /etc/profile.d/compat-harness-flux.sh (login shells) and sourced at the end of
# /etc/bash.bashrc (the interactive shell `kubectl exec -it POD -- bash` starts). The operator
# writes $VIEW/flux-view.sh (PATH, PYTHONPATH, LD_LIBRARY_PATH and fluxsocket, the broker's
# local URI: flux-operator pkg/flux/templates/components.sh) and its docs ask users to run
# `. /mnt/flux/flux-view.sh && flux proxy $fluxsocket bash`; sourcing it and pointing FLUX_URI
# at the broker's socket gives this shell the same. Nothing happens outside such a pod, or when
# FLUX_URI is already set. `harness` does the same by itself (harness/run/flux_view.py).
_harness_view="${HARNESS_FLUX_VIEW:-/mnt/flux}"
if [ -z "${FLUX_URI:-}" ] && [ -r "$_harness_view/flux-view.sh" ]; then
    . "$_harness_view/flux-view.sh"
    if [ -n "${fluxsocket:-}" ] && [ -S "${fluxsocket#local://}" ]; then
        export FLUX_URI="$fluxsocket"
    fi
fi
unset _harness_view
