//! The learner crate's error type.

/// Errors returned by the learner's maths and network-maintenance functions.
#[derive(Debug, thiserror::Error)]
pub enum LearnerError {
    /// An argument is outside its documented domain (for example `n_step == 0`).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),

    /// Inputs that must agree in shape do not.
    #[error("shape mismatch for {what}: expected {expected:?}, got {actual:?}")]
    ShapeMismatch {
        /// The input (or variable) that has the wrong shape.
        what: String,
        /// The shape it should have.
        expected: Vec<i64>,
        /// The shape it has.
        actual: Vec<i64>,
    },

    /// A tensor has an element type the function cannot use.
    #[error("unsupported element kind for {what}: {kind:?}")]
    UnsupportedKind {
        /// The input (or variable) with the wrong kind.
        what: String,
        /// Its kind.
        kind: tch::Kind,
    },

    /// The online and target variable stores do not hold the same variable names.
    #[error("variable {name} exists in the {present_in} var-store but not in the other one")]
    VariableMismatch {
        /// The unmatched variable name.
        name: String,
        /// `"online"` or `"target"`: the store that has it.
        present_in: &'static str,
    },

    /// The global gradient norm is NaN or infinite; no gradient was changed.
    #[error("global gradient norm is not finite: {0}")]
    NonFiniteGradientNorm(f64),

    /// An error raised by libtorch.
    #[error(transparent)]
    Torch(#[from] tch::TchError),
}

/// A libtorch error that came back as a message (`permakey::foreach`'s shim).
pub(crate) fn torch_message(message: String) -> LearnerError {
    LearnerError::Torch(tch::TchError::Torch(message))
}

/// Checks a tensor's shape, naming it in the error.
pub(crate) fn expect_shape(what: &str, tensor: &tch::Tensor, expected: &[i64]) -> Result<(), LearnerError> {
    let actual = tensor.size();
    if actual != expected {
        return Err(LearnerError::ShapeMismatch { what: what.to_owned(), expected: expected.to_vec(), actual });
    }
    Ok(())
}
