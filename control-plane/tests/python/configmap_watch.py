"""Drives the apiserver with the Python kubernetes client.

Usage: configmap_watch.py KUBECONFIG NAMESPACE TRIGGER

Lists namespaces and pods, creates the ConfigMap `py-made` in NAMESPACE,
then watches ConfigMaps there (with a server-side timeout) from the list's
resourceVersion. Prints `WATCHING` once the watch is set up; the caller then
creates and modifies the ConfigMap TRIGGER. Prints each event as
`EVENT <type> <name>` and exits 0 after an ADDED and a MODIFIED event for
TRIGGER, 1 when the watch ends first.
"""

import sys

from kubernetes import client, config, watch


def main():
    kubeconfig, namespace, trigger = sys.argv[1:4]
    config.load_kube_config(config_file=kubeconfig)
    core = client.CoreV1Api()

    names = [ns.metadata.name for ns in core.list_namespace().items]
    print("NAMESPACES " + " ".join(sorted(names)), flush=True)
    pods = core.list_pod_for_all_namespaces()
    print("PODS %d" % len(pods.items), flush=True)
    pods = core.list_namespaced_pod(namespace)
    print("NAMESPACE_PODS %d" % len(pods.items), flush=True)

    made = core.create_namespaced_config_map(
        namespace,
        client.V1ConfigMap(
            metadata=client.V1ObjectMeta(name="py-made"),
            data={"made-by": "python"},
        ),
    )
    print("CREATED %s %s" % (made.metadata.name, made.metadata.resource_version), flush=True)

    listed = core.list_namespaced_config_map(namespace)
    print("CONFIGMAPS " + " ".join(sorted(c.metadata.name for c in listed.items)), flush=True)

    seen = set()
    w = watch.Watch()
    stream = w.stream(
        core.list_namespaced_config_map,
        namespace,
        resource_version=listed.metadata.resource_version,
        timeout_seconds=60,
    )
    print("WATCHING", flush=True)
    for event in stream:
        name = event["object"].metadata.name
        print("EVENT %s %s" % (event["type"], name), flush=True)
        if name == trigger:
            seen.add(event["type"])
        if {"ADDED", "MODIFIED"} <= seen:
            w.stop()
            return 0
    print("watch ended; saw %s" % sorted(seen), flush=True)
    return 1


if __name__ == "__main__":
    sys.exit(main())
