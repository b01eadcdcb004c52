"""CODI training: the objective (teacher, latent student, distillation), a resumable
trainer, evaluation by number of steps, and the shipped toy model's recipe."""
