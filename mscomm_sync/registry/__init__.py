"""Service discovery: the file and etcd registries and the health poller."""
