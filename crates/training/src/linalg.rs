//! The little dense linear algebra training needs: solving symmetric positive definite systems
//! (Newton steps of logistic regression, ridge regression's normal equations) by Cholesky.

use crate::error::{Result, TrainingError};

/// Solves `A X = B` for `X`, where `A` is `n x n` symmetric positive definite (row-major) and `B`
/// is `n x m` (row-major, `m` right-hand sides). Returns `X`, `n x m`, row-major.
pub(crate) fn solve_spd(a: &[f64], n: usize, b: &[f64], m: usize) -> Result<Vec<f64>> {
    if a.len() != n * n || b.len() != n * m {
        return Err(TrainingError::Failed(format!(
            "solve: A has {} values for n = {n}, B has {} for m = {m}",
            a.len(),
            b.len()
        )));
    }
    // Cholesky: A = L L^T, L lower triangular.
    let mut l = vec![0f64; n * n];
    for i in 0..n {
        for j in 0..=i {
            let mut sum = a[i * n + j];
            for k in 0..j {
                sum -= l[i * n + k] * l[j * n + k];
            }
            if i == j {
                if sum.is_nan() || sum <= 0.0 || !sum.is_finite() {
                    return Err(TrainingError::Failed(format!(
                        "the system is not positive definite (pivot {i} is {sum})"
                    )));
                }
                l[i * n + i] = sum.sqrt();
            } else {
                l[i * n + j] = sum / l[j * n + j];
            }
        }
    }
    // Forward (L Y = B), then backward (L^T X = Y), for every right-hand side.
    let mut x = b.to_vec();
    for c in 0..m {
        for i in 0..n {
            let mut sum = x[i * m + c];
            for k in 0..i {
                sum -= l[i * n + k] * x[k * m + c];
            }
            x[i * m + c] = sum / l[i * n + i];
        }
        for i in (0..n).rev() {
            let mut sum = x[i * m + c];
            for k in i + 1..n {
                sum -= l[k * n + i] * x[k * m + c];
            }
            x[i * m + c] = sum / l[i * n + i];
        }
    }
    Ok(x)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn solves_a_hand_computed_system() {
        // A = [[4, 2], [2, 3]], B = [[2, 8], [1, 7]] -> X = [[0.5, 1.25], [0, 1.5]].
        let x = solve_spd(&[4.0, 2.0, 2.0, 3.0], 2, &[2.0, 8.0, 1.0, 7.0], 2).unwrap();
        let want = [0.5, 1.25, 0.0, 1.5];
        for (g, w) in x.iter().zip(want) {
            assert!((g - w).abs() < 1e-12, "{x:?}");
        }
    }

    #[test]
    fn rejects_indefinite_and_misshapen_systems() {
        assert!(solve_spd(&[1.0, 2.0, 2.0, 1.0], 2, &[1.0, 1.0], 1).is_err());
        assert!(solve_spd(&[1.0], 2, &[1.0, 1.0], 1).is_err());
    }
}
