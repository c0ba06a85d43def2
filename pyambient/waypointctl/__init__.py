"""`pyambient waypoint` logic (istioctl `waypoint`), over two backends: a mesh directory or a kubeconfig."""
