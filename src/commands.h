/* commands: entry points of the subcommands, one per file. Each takes argv after the command
 * word (argv[0] is the command name), parses its own options, returns an exit status
 * (0 ok, 1 failure, 2 usage error). Never calls exit(). */
#ifndef SLM_COMMANDS_H
#define SLM_COMMANDS_H

int cmd_serve(int argc, char **argv); /* src/engine/serve_cli.c */
int cmd_model(int argc, char **argv); /* src/engine/model_cli.c */
int cmd_ttft(int argc, char **argv); /* src/ttft/cmd_ttft.c */
int cmd_env(int argc, char **argv);  /* src/server/cmd_env.c */
int cmd_batch(int argc, char **argv); /* src/batch/cmd_batch.c */
int cmd_check(int argc, char **argv); /* src/check/cmd_check.c */
int cmd_lab(int argc, char **argv);   /* src/lab/cmd_lab.c */
int cmd_kv(int argc, char **argv);    /* src/kv/cmd_kv.c */
int cmd_calibrate(int argc, char **argv); /* src/calibrate/cmd_calibrate.c */
int cmd_prefix(int argc, char **argv); /* src/prefix/cmd_prefix.c */

#endif
