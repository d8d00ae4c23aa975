// Command podhelper is a tiny program that the node agent's tests run as a
// pod: it serves /readyz (until /unready is called), /healthz and /self on
// ADMIN_ADDR, reads its own Pod
// with the kubeconfig the agent gives it, and exits 0 on SIGTERM after
// printing that it got it (or ignores SIGTERM when IGNORE_SIGTERM is set;
// it exits 3 after EXIT_AFTER when that is set; /healthz fails when
// LIVENESS_FAILS is set).
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

type self struct {
	Name, Namespace, PodIP, Node string
	AdminAddr                    string
	Args                         []string
	UID                          string // from the API, read with the pod's own token
	GetPodError                  string
	ListSecretsError             string
}

func main() {
	fmt.Println("podhelper: starting, args", os.Args[1:])
	if d := os.Getenv("EXIT_AFTER"); d != "" {
		dur, _ := time.ParseDuration(d)
		time.Sleep(dur)
		fmt.Println("podhelper: exiting on purpose")
		os.Exit(3)
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM)

	mux := http.NewServeMux()
	var unready atomic.Bool
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if unready.Load() {
			http.Error(w, "not ready on request", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("/unready", func(w http.ResponseWriter, _ *http.Request) {
		unready.Store(true)
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		if os.Getenv("LIVENESS_FAILS") != "" {
			http.Error(w, "unhealthy on purpose", http.StatusInternalServerError)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("/self", func(w http.ResponseWriter, r *http.Request) {
		s := self{Name: os.Getenv("POD_NAME"), Namespace: os.Getenv("POD_NAMESPACE"), PodIP: os.Getenv("POD_IP"), Node: os.Getenv("NODE_NAME"), Args: os.Args[1:],
			AdminAddr: os.Getenv("ADMIN_ADDR")}
		cfg, err := clientcmd.BuildConfigFromFlags("", os.Getenv("KUBECONFIG"))
		if err == nil {
			var cs *kubernetes.Clientset
			cs, err = kubernetes.NewForConfig(cfg)
			if err == nil {
				ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
				defer cancel()
				pod, gerr := cs.CoreV1().Pods(s.Namespace).Get(ctx, s.Name, metav1.GetOptions{})
				if gerr != nil {
					s.GetPodError = gerr.Error()
				} else {
					s.UID = string(pod.UID)
				}
				if _, lerr := cs.CoreV1().Secrets(s.Namespace).List(ctx, metav1.ListOptions{}); lerr != nil {
					s.ListSecretsError = lerr.Error()
				}
			}
		}
		if err != nil {
			s.GetPodError = err.Error()
		}
		_ = json.NewEncoder(w).Encode(s)
	})
	srv := &http.Server{Addr: os.Getenv("ADMIN_ADDR"), Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := srv.ListenAndServe(); err != nil && err != http.ErrServerClosed {
			fmt.Println("podhelper: serving:", err)
			os.Exit(1)
		}
	}()
	fmt.Println("podhelper: serving on", srv.Addr)
	<-sigs
	fmt.Println("podhelper: SIGTERM received")
	if os.Getenv("IGNORE_SIGTERM") != "" {
		fmt.Println("podhelper: ignoring SIGTERM")
		select {}
	}
	_ = srv.Close()
	os.Exit(0)
}
